"""Rules of authentication: who may log in, how long a session lasts, who a token names.

Functions return an outcome instead of raising, so that the audit event of a refused login
is committed before the endpoint answers with the problem. `refresh` and `authenticate` run
in the request's connection; `login` is handed a transaction factory instead, because it
must not hold a database connection while argon2 runs (a burst of logins would otherwise
take the whole pool, and every other request would wait for it).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime

from api.audit import repository as audit_repository
from api.audit.schemas import AuditEvent
from api.auth import repository
from api.auth.ratelimit import LoginRateLimiter
from api.auth.schemas import Principal, TokenRead, User
from api.db import Conn
from api.security import (
    AccessClaims,
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
# Usernames go into the audit trail (to see credential stuffing); cap what a client can
# make us store.
MAX_AUDITED_USERNAME = 128
_SCOPE_WORDS = {"username": "username", "ip": "client address"}

Transaction = Callable[[], AbstractAsyncContextManager[Conn]]


@dataclass(frozen=True, slots=True)
class Refused:
    """A login or token refusal: the endpoint turns it into a problem answer."""

    status: int
    code: str
    detail: str
    retry_after: int | None = None


def _login_event(username: str, client_ip: str, *, reason: str | None, user: User | None) -> AuditEvent:
    """The audit event of a login attempt; `reason` is None for a successful login."""
    detail: dict[str, object] = {
        "username": username[:MAX_AUDITED_USERNAME],
        "client_ip": client_ip,
    }
    if reason:
        detail["reason"] = reason
    return AuditEvent(
        action=LOGIN_ACTION,
        resource=LOGIN_RESOURCE,
        outcome="denied" if reason else "allowed",
        actor_id=user.id if user else None,
        actor_role=user.role if user else None,
        detail=detail,
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
    refusal = limiter.check(username, client_ip)
    if refusal is not None:
        async with transaction() as conn:
            await audit_repository.record(
                conn, _login_event(username, client_ip, reason=f"rate_limited_{refusal.scope}", user=None)
            )
        return Refused(
            429,
            "too_many_login_attempts",
            f"too many failed logins for this {_SCOPE_WORDS[refusal.scope]}; try again in {refusal.retry_after} s",
            retry_after=refusal.retry_after,
        )

    async with transaction() as conn:
        user = await repository.get_user_by_username(conn, username)
    # An unknown user is checked against a dummy hash so that it takes as long as a wrong
    # password: response times must not tell which usernames exist.
    password_ok = await passwords.verify(password, user.password_hash if user else dummy_hash())
    if user is None or not password_ok:
        limiter.record_failure(username, client_ip)
        reason = "unknown_user" if user is None else "wrong_password"
        async with transaction() as conn:
            await audit_repository.record(conn, _login_event(username, client_ip, reason=reason, user=user))
        return Refused(401, "invalid_credentials", "username or password is wrong")
    if user.disabled:
        limiter.record_failure(username, client_ip)
        async with transaction() as conn:
            await audit_repository.record(conn, _login_event(username, client_ip, reason="account_disabled", user=user))
        return Refused(403, "account_disabled", "this account is disabled; contact your administrator")

    limiter.record_success(username)
    # Upgrade a hash made with older parameters while we hold the plain password.
    new_hash = await passwords.hash(password) if needs_rehash(user.password_hash) else None
    session_id = new_session_id()
    token, claims = issue_token(
        key=settings.jwt_secret.get_secret_value(),
        issuer=settings.jwt_issuer,
        user_id=user.id,
        role=user.role,
        session_id=session_id,
        auth_time=now,
        now=now,
        ttl=settings.access_token_ttl,
        absolute_limit=settings.session_absolute_timeout,
    )
    event = _login_event(username, client_ip, reason=None, user=user)
    event.detail["session_id"] = session_id
    async with transaction() as conn:
        if new_hash is not None:
            await repository.update_password_hash(conn, user.id, new_hash)
        await audit_repository.record(conn, event)
    return TokenRead(access_token=token, expires_in=_seconds_left(claims, now))


async def refresh(conn: Conn, *, settings: ApiSettings, token: str, now: datetime) -> TokenRead | Refused:
    """A new access token for the same session, within the idle and absolute limits.

    The presented token may have expired, but only by less than the idle limit: a client
    that did nothing for longer has to log in again.
    """
    try:
        claims = decode_token(
            token,
            key=settings.jwt_secret.get_secret_value(),
            issuer=settings.jwt_issuer,
            verify_exp=False,
        )
    except TokenError as exc:
        return Refused(401, exc.code, exc.detail)
    if now - claims.issued_at > settings.session_idle_timeout:
        return Refused(401, "session_expired", "the session was idle for too long; log in again")
    if now - claims.auth_time >= settings.session_absolute_timeout:
        return Refused(401, "session_expired", "the session reached its maximum length; log in again")
    user = await repository.get_user_by_id(conn, claims.user_id)
    if user is None or user.disabled or user.role != claims.role:
        return Refused(401, "invalid_token", "the session is no longer valid; log in again")
    new_token, new_claims = issue_token(
        key=settings.jwt_secret.get_secret_value(),
        issuer=settings.jwt_issuer,
        user_id=user.id,
        role=user.role,
        session_id=claims.session_id,
        auth_time=claims.auth_time,
        now=now,
        ttl=settings.access_token_ttl,
        absolute_limit=settings.session_absolute_timeout,
    )
    return TokenRead(access_token=new_token, expires_in=_seconds_left(new_claims, now))


async def authenticate(conn: Conn, *, settings: ApiSettings, token: str) -> Principal | Refused:
    """The principal a valid, unexpired token names, as the user is stored now.

    The user is read on every request so that disabling an account or changing a role
    takes effect at once rather than when the token expires.
    """
    try:
        claims = decode_token(token, key=settings.jwt_secret.get_secret_value(), issuer=settings.jwt_issuer)
    except TokenError as exc:
        return Refused(401, exc.code, exc.detail)
    user = await repository.get_user_by_id(conn, claims.user_id)
    if user is None or user.disabled or user.role != claims.role:
        return Refused(401, "invalid_token", "the session is no longer valid; log in again")
    return Principal(
        user_id=user.id,
        username=user.username,
        role=user.role,
        display_name=user.display_name,
        patient_id=user.patient_id,
        session_id=claims.session_id,
        auth_time=claims.auth_time,
    )


def _seconds_left(claims: AccessClaims, now: datetime) -> int:
    return max(0, int((claims.expires_at - now).total_seconds()))
