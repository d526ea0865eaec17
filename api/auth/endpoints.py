"""HTTP endpoints of the auth domain: log in, refresh a session, who am I."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import OAuth2PasswordRequestForm

from api.auth import service
from api.auth.dependencies import CurrentPrincipal, bearer_token, unauthorized
from api.auth.ratelimit import LoginRateLimiter
from api.auth.schemas import TokenRead, UserRead
from api.db import Pool
from api.dependencies import (
    client_address,
    get_login_limiter,
    get_password_work,
    get_pool,
    get_settings,
    utc_now,
)
from api.problems import Problem, problem_responses
from api.security import PasswordWork
from api.settings import ApiSettings

router = APIRouter(tags=["auth"])

# RFC 6749 §5.1: token answers must not be cached.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _answer(outcome: TokenRead | service.Refused, response: Response) -> TokenRead:
    if isinstance(outcome, service.Refused):
        if outcome.status == 401:
            raise unauthorized(outcome.code, outcome.detail)
        headers = {"Retry-After": str(outcome.retry_after)} if outcome.retry_after is not None else None
        raise Problem(outcome.status, outcome.code, outcome.detail, headers=headers)
    response.headers.update(_NO_STORE)
    return outcome


@router.post(
    "/auth/token",
    response_model=TokenRead,
    summary="Log in with username and password (OAuth2 password flow)",
    responses=problem_responses(401, 403, 422, 429),
)
async def create_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    response: Response,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    limiter: Annotated[LoginRateLimiter, Depends(get_login_limiter)],
    passwords: Annotated[PasswordWork, Depends(get_password_work)],
) -> TokenRead:
    outcome = await service.login(
        lambda: pool.connection(timeout=settings.db_acquire_timeout),
        settings=settings,
        limiter=limiter,
        passwords=passwords,
        username=form.username,
        password=form.password,
        client_ip=client_address(request),
        now=utc_now(),
    )
    # The audit event is committed by now; only now may a refusal be raised.
    return _answer(outcome, response)


@router.post(
    "/auth/refresh",
    response_model=TokenRead,
    summary="Exchange the current access token for a fresh one (same session)",
    responses=problem_responses(401),
)
async def refresh_token(
    token: Annotated[str | None, Depends(bearer_token)],
    response: Response,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> TokenRead:
    if not token:
        raise unauthorized("not_authenticated", "an access token is required (Authorization: Bearer <token>)")
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.refresh(conn, settings=settings, token=token, now=utc_now())
    return _answer(outcome, response)


@router.get("/me", response_model=UserRead, summary="The current user", responses=problem_responses(401))
async def read_me(principal: CurrentPrincipal) -> UserRead:
    return UserRead.model_validate(
        {
            "id": principal.user_id,
            "username": principal.username,
            "display_name": principal.display_name,
            "role": principal.role,
            "patient_id": principal.patient_id,
        }
    )
