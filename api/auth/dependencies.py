"""`current_principal`: the dependency that makes an endpoint require a valid access token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer

from api.auth import service
from api.auth.schemas import Principal
from api.db import Pool
from api.dependencies import get_pool, get_settings
from api.problems import Problem
from api.settings import ApiSettings

TOKEN_URL = "/api/v1/auth/token"  # noqa: S105 - a path, not a password

# auto_error=False: a missing token is answered by us, as a problem document.
bearer_token = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


def unauthorized(code: str, detail: str) -> Problem:
    """A 401 problem with the challenge RFC 6750 §3 asks for."""
    challenge = 'Bearer realm="rpm"' if code == "not_authenticated" else 'Bearer realm="rpm", error="invalid_token"'
    return Problem(401, code, detail, headers={"WWW-Authenticate": challenge})


async def current_principal(
    token: Annotated[str | None, Depends(bearer_token)],
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> Principal:
    if not token:
        raise unauthorized("not_authenticated", "an access token is required (Authorization: Bearer <token>)")
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.authenticate(conn, settings=settings, token=token)
    if isinstance(outcome, service.Refused):
        raise unauthorized(outcome.code, outcome.detail)
    return outcome


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
