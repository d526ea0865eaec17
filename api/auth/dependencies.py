"""`current_principal`: the dependency that makes an endpoint require a valid access token
of an open session (`resolve_principal` for endpoints that answer anyone but tell more to
some roles)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from api.auth import service
from api.auth.schemas import Principal
from api.db import Pool
from api.dependencies import client_address, get_pool, get_settings
from api.problems import Problem
from api.settings import ApiSettings

TOKEN_URL = "/api/v1/auth/token"  # noqa: S105 - a path, not a password

# auto_error=False: a missing token is answered by us, as a problem document.
bearer_token = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


def unauthorized(code: str, detail: str) -> Problem:
    """A 401 problem with the challenge RFC 6750 §3 asks for."""
    challenge = 'Bearer realm="rpm"' if code == "not_authenticated" else 'Bearer realm="rpm", error="invalid_token"'
    return Problem(401, code, detail, headers={"WWW-Authenticate": challenge})


async def resolve_principal(request: Request, token: str) -> Principal | service.Refused:
    """Authenticate a bearer token; the principal is kept on the request (for the audit of
    requests refused later, e.g. by validation)."""
    settings: ApiSettings = get_settings(request)
    pool: Pool = get_pool(request)
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        # One read: in autocommit it is one round trip, with no BEGIN before it and no COMMIT
        # after (this runs before every authenticated request).
        await conn.set_autocommit(True)
        try:
            outcome = await service.authenticate(
                conn, settings=settings, token=token, client_ip=client_address(request)
            )
        finally:
            await conn.set_autocommit(False)
    if isinstance(outcome, Principal):
        request.state.principal = outcome
    return outcome


async def current_principal(request: Request, token: Annotated[str | None, Depends(bearer_token)]) -> Principal:
    if not token:
        raise unauthorized("not_authenticated", "an access token is required (Authorization: Bearer <token>)")
    outcome = await resolve_principal(request, token)
    if isinstance(outcome, service.Refused):
        raise unauthorized(outcome.code, outcome.detail)
    return outcome


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
