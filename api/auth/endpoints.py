"""HTTP endpoints of the auth domain: log in, refresh a session, log out, change the
password, who am I."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.security import OAuth2PasswordRequestForm

from api.auth import service
from api.auth.dependencies import CurrentPrincipal, unauthorized
from api.auth.ratelimit import LoginRateLimiter
from api.auth.schemas import PasswordChange, TokenRead, UserRead
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


def _refusal(outcome: service.Refused) -> Problem:
    if outcome.status == 401:
        return unauthorized(outcome.code, outcome.detail)
    headers = {"Retry-After": str(outcome.retry_after)} if outcome.retry_after is not None else None
    return Problem(outcome.status, outcome.code, outcome.detail, headers=headers)


def _answer(outcome: TokenRead | service.Refused, response: Response) -> TokenRead:
    if isinstance(outcome, service.Refused):
        raise _refusal(outcome)
    response.headers.update(_NO_STORE)
    return outcome


@router.post(
    "/auth/token",
    response_model=TokenRead,
    summary="Log in with username and password (OAuth2 password flow)",
    responses=problem_responses(401, 422, 429),
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
    summary="Exchange a refresh token for new access and refresh tokens (RFC 6749 §6)",
    description="The refresh token is single-use: the answer carries the next one. Presenting a "
    "refresh token that was already exchanged ends the session (it was copied).",
    responses=problem_responses(401, 422),
)
async def refresh_token(
    grant_type: Annotated[Literal["refresh_token"], Form(description="Always `refresh_token`")],
    refresh_token: Annotated[str, Form(min_length=1, max_length=1024, description="The refresh token")],
    request: Request,
    response: Response,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> TokenRead:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.refresh(
            conn, settings=settings, refresh_token=refresh_token, client_ip=client_address(request), now=utc_now()
        )
    return _answer(outcome, response)


@router.post(
    "/auth/logout",
    status_code=204,
    summary="End the current session (its access and refresh tokens stop working)",
    responses=problem_responses(401),
)
async def logout(
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> Response:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        await service.logout(conn, principal, now=utc_now())
    return Response(status_code=204)


@router.post(
    "/me/password",
    status_code=204,
    summary="Change the current user's password; every session of the user ends",
    responses=problem_responses(401, 403, 422, 429),
)
async def change_password(
    body: PasswordChange,
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    limiter: Annotated[LoginRateLimiter, Depends(get_login_limiter)],
    passwords: Annotated[PasswordWork, Depends(get_password_work)],
) -> Response:
    outcome = await service.change_password(
        lambda: pool.connection(timeout=settings.db_acquire_timeout),
        principal,
        limiter=limiter,
        passwords=passwords,
        current_password=body.current_password,
        new_password=body.new_password,
        now=utc_now(),
    )
    if isinstance(outcome, service.Refused):
        raise _refusal(outcome)
    return Response(status_code=204)


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
