"""Password hashing (argon2 via pwdlib) and access tokens (HS256 JWTs via PyJWT).

`hash_password` is also what the stack runner uses to create demo users, so it must stay
importable without settings or I/O. Token functions are pure: the caller passes the key,
the issuer and the clock.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final

import jwt
from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError
from starlette.concurrency import run_in_threadpool

ALGORITHM: Final = "HS256"
_REQUIRED_CLAIMS: Final = ["iss", "aud", "sub", "role", "sid", "iat", "exp", "auth_time"]

_hasher: Final = PasswordHash.recommended()


def hash_password(plain: str) -> str:
    """An argon2id hash (PHC string) of a password, for `users.password_hash`."""
    return _hasher.hash(plain)


def verify_password(plain: str, password_hash: str) -> bool:
    """True when the password matches; False for a wrong password or an unreadable hash."""
    try:
        return _hasher.verify(plain, password_hash)
    except UnknownHashError:
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's defaults."""
    return bool(_hasher.current_hasher.check_needs_rehash(password_hash))


class PasswordWork:
    """argon2 off the event loop, a bounded number at a time.

    Each hash takes tens of milliseconds of CPU and 64 MiB of memory; without a bound a
    burst of logins would take the thread pool's 40 threads and gigabytes of memory.
    """

    def __init__(self, concurrency: int) -> None:
        self._slots = asyncio.Semaphore(concurrency)

    async def verify(self, plain: str, password_hash: str) -> bool:
        async with self._slots:
            return await run_in_threadpool(verify_password, plain, password_hash)

    async def hash(self, plain: str) -> str:
        async with self._slots:
            return await run_in_threadpool(hash_password, plain)


@lru_cache(maxsize=1)
def dummy_hash() -> str:
    """A hash to verify against when the username is unknown, so that an unknown user
    costs as much time as a wrong password and usernames cannot be probed by timing."""
    return hash_password(uuid.uuid4().hex)


class TokenError(Exception):
    """The token is missing, malformed, forged, expired or otherwise unacceptable."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What an access token says about its bearer."""

    user_id: uuid.UUID
    role: str
    session_id: str
    issued_at: datetime
    expires_at: datetime
    auth_time: datetime  # when the password was checked; the absolute session limit counts from here


def issue_token(
    *,
    key: str,
    issuer: str,
    user_id: uuid.UUID,
    role: str,
    session_id: str,
    auth_time: datetime,
    now: datetime,
    ttl: timedelta,
    absolute_limit: timedelta,
) -> tuple[str, AccessClaims]:
    """Sign an access token; it never outlives the session's absolute limit."""
    expires_at = min(now + ttl, auth_time + absolute_limit)
    payload: dict[str, Any] = {
        "iss": issuer,
        "aud": issuer,
        "sub": str(user_id),
        "role": role,
        "sid": session_id,
        "iat": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
        "auth_time": int(auth_time.timestamp()),
    }
    token = jwt.encode(payload, key, algorithm=ALGORITHM)
    return token, _claims(payload)


def decode_token(token: str, *, key: str, issuer: str, verify_exp: bool = True) -> AccessClaims:
    """Verify signature, issuer, audience and (unless told not to) expiry."""
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],  # never trust the token's own `alg` header
            issuer=issuer,
            audience=issuer,
            options={"require": _REQUIRED_CLAIMS, "verify_exp": verify_exp},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token_expired", "the access token has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenError("invalid_token", "the access token is not valid") from exc
    try:
        return _claims(payload)
    except (KeyError, TypeError, ValueError, OverflowError, OSError) as exc:
        # OverflowError/OSError: a timestamp claim beyond what a datetime can hold.
        raise TokenError("invalid_token", "the access token is not valid") from exc


def _claims(payload: dict[str, Any]) -> AccessClaims:
    return AccessClaims(
        user_id=uuid.UUID(str(payload["sub"])),
        role=str(payload["role"]),
        session_id=str(payload["sid"]),
        issued_at=datetime.fromtimestamp(int(payload["iat"]), UTC),
        expires_at=datetime.fromtimestamp(int(payload["exp"]), UTC),
        auth_time=datetime.fromtimestamp(int(payload["auth_time"]), UTC),
    )


def new_session_id() -> str:
    return uuid.uuid4().hex
