"""Rules of authentication: who may log in, how long a session lasts, who a token names.

Functions return an outcome instead of raising, so that the audit event of a refused
attempt is committed before the endpoint answers with the problem. `refresh`,
`authenticate` and `logout` run in the request's connection; `login` and `change_password`
are handed a transaction factory instead, because they must not hold a database connection
while argon2 runs (a burst of logins would otherwise take the whole pool, and every other
request would wait for it).

Sessions (ADR 0014): a password login opens a row in `sessions` and answers a short-lived
access token (JWT naming the session) and a single-use refresh token. Refreshing rotates the
refresh token; presenting a rotated-away token again is taken as theft and ends the session.
Logout, a password change and disabling the account end sessions too, and an access token
of an ended session is refused at once.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

from api.audit import repository as audit_repository
from api.audit.schemas import AuditEvent, AuditOutcome
from api.auth import repository
from api.auth.ratelimit import LoginRateLimiter, Refusal
from api.auth.schemas import Principal, RefreshTokenRow, Session, TokenRead, User
from api.db import Conn
from api.security import (
    PasswordWork,
    TokenError,
    decode_token,
    dummy_hash,
    issue_token,
    needs_rehash,
    new_session_id,
)
from api.settings import ApiSettings

LOGIN_ACTION = "login"
LOGIN_RESOURCE = "auth/token"
REFRESH_ACTION = "refresh"
REFRESH_RESOURCE = "auth/refresh"
LOGOUT_ACTION = "logout"
PASSWORD_ACTION = "change_password"  # noqa: S105 - an audit action name
PASSWORD_RESOURCE = "me/password"  # noqa: S105 - an audit resource name
# Usernames go into the audit trail (to see credential stuffing); cap what a client can
# make us store.
MAX_AUDITED_USERNAME = 128
_SCOPE_WORDS = {
    "user_and_client": "username from your address",
    "client": "client address",
    "user": "username",
}
WRONG_CREDENTIALS = "username or password is wrong"

Transaction = Callable[[], AbstractAsyncContextManager[Conn]]


@dataclass(frozen=True, slots=True)
class Refused:
    """A login or token refusal: the endpoint turns it into a problem answer."""

    status: int
    code: str
    detail: str
    retry_after: int | None = None


def refresh_token_digest(token: str) -> bytes:
    """What `refresh_tokens` stores of a token (SHA-256: the token is 256 random bits)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _event(
    action: str,
    resource: str,
    *,
    reason: str | None,
    user: User | None,
    client_ip: str,
    session_id: str | None = None,
    **extra: object,
) -> AuditEvent:
    """An audit event of the auth domain; `reason` is None when the action was allowed."""
    detail: dict[str, object] = {"client_ip": client_ip, **extra}
    if session_id is not None:
        detail["session_id"] = session_id
    if reason:
        detail["reason"] = reason
    outcome: AuditOutcome = "denied" if reason else "allowed"
    return AuditEvent(
        action=action,
        resource=resource,
        outcome=outcome,
        actor_id=user.id if user else None,
        actor_role=user.role if user else None,
        detail=detail,
    )


def _login_event(username: str, client_ip: str, *, reason: str | None, user: User | None) -> AuditEvent:
    return _event(
        LOGIN_ACTION,
        LOGIN_RESOURCE,
        reason=reason,
        user=user,
        client_ip=client_ip,
        username=username[:MAX_AUDITED_USERNAME],
    )


def _throttled(refusal_scope: str, retry_after: int) -> Refused:
    return Refused(
        429,
        "too_many_login_attempts",
        f"too many failed logins for this {_SCOPE_WORDS[refusal_scope]}; try again in {retry_after} s",
        retry_after=retry_after,
    )


async def _open_session(
    conn: Conn, *, settings: ApiSettings, user: User, client_ip: str, now: datetime
) -> tuple[str, TokenRead]:
    session_id = new_session_id()
    await repository.create_session(conn, session_id, user.id, now, now + settings.session_absolute_timeout, client_ip)
    return session_id, await _issue(conn, settings=settings, user=user, session_id=session_id, auth_time=now, now=now)


async def _issue(
    conn: Conn, *, settings: ApiSettings, user: User, session_id: str, auth_time: datetime, now: datetime
) -> TokenRead:
    """A new access token and a new refresh token (stored as a digest) for a session."""
    access, claims = issue_token(
        key=settings.jwt_secret.get_secret_value(),
        issuer=settings.jwt_issuer,
        user_id=user.id,
        role=user.role,
        session_id=session_id,
        auth_time=auth_time,
        now=now,
        ttl=settings.access_token_ttl,
        absolute_limit=settings.session_absolute_timeout,
    )
    refresh = secrets.token_urlsafe(32)
    refresh_expires = min(now + settings.session_idle_timeout, auth_time + settings.session_absolute_timeout)
    await repository.add_refresh_token(conn, refresh_token_digest(refresh), session_id, now, refresh_expires)
    return TokenRead(
        access_token=access,
        expires_in=_seconds(claims.expires_at - now),
        refresh_token=refresh,
        refresh_expires_in=_seconds(refresh_expires - now),
    )


async def login(
    transaction: Transaction,
    *,
    settings: ApiSettings,
    limiter: LoginRateLimiter,
    passwords: PasswordWork,
    username: str,
    password: str,
    client_ip: str,
    now: datetime,
) -> TokenRead | Refused:
    """Check the password and open a session; every attempt is audited."""
    attempt = limiter.attempt(username, client_ip)
    if isinstance(attempt, Refusal):
        async with transaction() as conn:
            await audit_repository.record(
                conn, _login_event(username, client_ip, reason=f"rate_limited_{attempt.scope}", user=None)
            )
        return _throttled(attempt.scope, attempt.retry_after)

    async with transaction() as conn:
        user = await repository.get_user_by_username(conn, username)
    # An unknown user is checked against a dummy hash so that it takes as long as a wrong
    # password: response times must not tell which usernames exist.
    password_ok = await passwords.verify(password, user.password_hash if user else dummy_hash())
    if user is None or not password_ok or user.disabled:
        # A disabled account answers exactly as a wrong password would: the answer must not
        # confirm to whoever holds the password that it was right. (The attempt was counted
        # as a failure when it was allowed.)
        reason = "unknown_user" if user is None else "wrong_password" if not password_ok else "account_disabled"
        async with transaction() as conn:
            await audit_repository.record(conn, _login_event(username, client_ip, reason=reason, user=user))
        return Refused(401, "invalid_credentials", WRONG_CREDENTIALS)

    limiter.succeeded(attempt)
    # Upgrade a hash made with older parameters while we hold the plain password.
    new_hash = await passwords.hash(password) if needs_rehash(user.password_hash) else None
    async with transaction() as conn:
        if new_hash is not None:
            await repository.update_password_hash(conn, user.id, new_hash)
        session_id, tokens = await _open_session(conn, settings=settings, user=user, client_ip=client_ip, now=now)
        event = _login_event(username, client_ip, reason=None, user=user)
        event.detail["session_id"] = session_id
        await audit_repository.record(conn, event)
    return tokens


async def refresh(
    conn: Conn, *, settings: ApiSettings, refresh_token: str, client_ip: str, now: datetime
) -> TokenRead | Refused:
    """Rotate a refresh token: new access and refresh tokens for the same session.

    The old refresh token stops working. Presenting it again means two parties hold it (one
    of them a thief): the session ends for both. Every attempt is audited.
    """
    digest = refresh_token_digest(refresh_token)
    claimed = await repository.claim_refresh_token(conn, digest, now)
    if claimed is None:
        stale = await repository.find_refresh_token(conn, digest)
        if stale is None:
            await audit_repository.record(
                conn,
                _event(
                    REFRESH_ACTION, REFRESH_RESOURCE, reason="unknown_refresh_token", user=None, client_ip=client_ip
                ),
            )
            return Refused(401, "invalid_token", "the refresh token is not valid; log in again")
        session = await repository.get_session(conn, stale.session_id)
        user = await repository.get_user_by_id(conn, session.user_id) if session else None
        revoked = await repository.revoke_session(conn, stale.session_id, "refresh_token_reuse", now)
        await audit_repository.record(
            conn,
            _event(
                REFRESH_ACTION,
                REFRESH_RESOURCE,
                reason="refresh_token_reuse",
                user=user,
                client_ip=client_ip,
                session_id=stale.session_id,
                session_revoked=revoked,
            ),
        )
        return Refused(
            401, "refresh_token_reused", "this refresh token was used before; the session has ended, log in again"
        )

    session = await repository.get_session(conn, claimed.session_id)
    user = await repository.get_user_by_id(conn, session.user_id) if session else None
    if session is None or user is None:
        refusal: tuple[str, Refused] | None = (
            "session_missing",
            Refused(401, "invalid_token", "the session is no longer valid; log in again"),
        )
    else:
        refusal = _refresh_refusal(session, user, claimed, now)
    if refusal is not None:
        reason, refused = refusal
        await audit_repository.record(
            conn,
            _event(
                REFRESH_ACTION,
                REFRESH_RESOURCE,
                reason=reason,
                user=user,
                client_ip=client_ip,
                session_id=claimed.session_id,
            ),
        )
        return refused
    assert session is not None
    assert user is not None
    await repository.touch_session(conn, session.id, now)
    tokens = await _issue(
        conn, settings=settings, user=user, session_id=session.id, auth_time=session.created_at, now=now
    )
    await audit_repository.record(
        conn,
        _event(REFRESH_ACTION, REFRESH_RESOURCE, reason=None, user=user, client_ip=client_ip, session_id=session.id),
    )
    return tokens


def _refresh_refusal(session: Session, user: User, token: RefreshTokenRow, now: datetime) -> tuple[str, Refused] | None:
    """Why an open-looking session may not be refreshed (audit reason, answer), or None."""
    ended = Refused(401, "session_ended", "the session has ended; log in again")
    if session.revoked_at is not None:
        return f"session_{session.revoked_reason}", ended
    if user.disabled:
        return "account_disabled", ended
    if session.expires_at <= now:
        return "session_absolute_timeout", Refused(
            401, "session_expired", "the session reached its maximum length; log in again"
        )
    if token.expires_at <= now:
        return "refresh_token_expired", Refused(
            401, "session_expired", "the session was idle for too long; log in again"
        )
    return None


async def authenticate(conn: Conn, *, settings: ApiSettings, token: str, client_ip: str) -> Principal | Refused:
    """The principal a valid, unexpired access token of an open session names, as the user is stored now.

    The user and the session are read on every request so that logout, disabling an account
    or changing a role take effect at once rather than when the token expires.
    """
    try:
        claims = decode_token(token, key=settings.jwt_secret.get_secret_value(), issuer=settings.jwt_issuer)
    except TokenError as exc:
        return Refused(401, exc.code, exc.detail)
    user, session = await repository.get_user_and_session(conn, claims.user_id, claims.session_id)
    if user is None or user.disabled or user.role != claims.role:
        return Refused(401, "invalid_token", "the session is no longer valid; log in again")
    if session is None or session.user_id != user.id:
        return Refused(401, "invalid_token", "the session is no longer valid; log in again")
    if session.revoked_at is not None:
        return Refused(401, "session_ended", "the session has ended; log in again")
    return Principal(
        user_id=user.id,
        username=user.username,
        role=user.role,
        display_name=user.display_name,
        patient_id=user.patient_id,
        session_id=claims.session_id,
        auth_time=claims.auth_time,
        client_ip=client_ip,
    )


async def logout(conn: Conn, principal: Principal, *, now: datetime) -> None:
    """End the caller's session: its access and refresh tokens stop working at once."""
    await repository.revoke_session(conn, principal.session_id, "logout", now)
    await audit_repository.record(
        conn,
        AuditEvent(
            action=LOGOUT_ACTION,
            resource="auth/logout",
            outcome="allowed",
            actor_id=principal.user_id,
            actor_role=principal.role,
            detail={"client_ip": principal.client_ip, "session_id": principal.session_id},
        ),
    )


async def change_password(
    transaction: Transaction,
    principal: Principal,
    *,
    limiter: LoginRateLimiter,
    passwords: PasswordWork,
    current_password: str,
    new_password: str,
    now: datetime,
) -> int | Refused:
    """Replace the caller's password and end all their sessions (returns how many).

    The current password is checked like a login, with the same throttling: a stolen access
    token must not become a way to guess the password.
    """
    attempt = limiter.attempt(principal.username, principal.client_ip)

    def event(reason: str | None, **extra: object) -> AuditEvent:
        return AuditEvent(
            action=PASSWORD_ACTION,
            resource=PASSWORD_RESOURCE,
            outcome="denied" if reason else "allowed",
            actor_id=principal.user_id,
            actor_role=principal.role,
            detail={
                "client_ip": principal.client_ip,
                "session_id": principal.session_id,
                **({"reason": reason} if reason else {}),
                **extra,
            },
        )

    if isinstance(attempt, Refusal):
        async with transaction() as conn:
            await audit_repository.record(conn, event(f"rate_limited_{attempt.scope}"))
        return _throttled(attempt.scope, attempt.retry_after)
    async with transaction() as conn:
        user = await repository.get_user_by_id(conn, principal.user_id)
    if user is None or not await passwords.verify(current_password, user.password_hash):
        async with transaction() as conn:
            await audit_repository.record(conn, event("wrong_password"))
        return Refused(403, "wrong_password", "the current password is wrong")
    limiter.succeeded(attempt)
    if new_password == current_password:
        return Refused(422, "password_unchanged", "the new password must differ from the current one")
    new_hash = await passwords.hash(new_password)
    async with transaction() as conn:
        await repository.update_password_hash(conn, user.id, new_hash)
        ended = await repository.revoke_user_sessions(conn, user.id, "password_changed", now)
        await audit_repository.record(conn, event(None, sessions_ended=ended))
    return ended


def _seconds(delta: timedelta) -> int:
    return max(0, int(delta.total_seconds()))
