"""HTTP endpoints of "who viewed my record": the patient's access log and flag, and the privacy
officer's queue of flags (ADR 0025)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Response

from api.accesslog import service
from api.accesslog.schemas import (
    MAX_EVENT_ID,
    AccessLogPage,
    AccessLogQuery,
    FlagRead,
    FlagRequest,
    PrivacyFlagPage,
    PrivacyFlagQuery,
    PrivacyFlagRead,
    ReviewRequest,
)
from api.auth.dependencies import CurrentPrincipal
from api.db import Pool
from api.dependencies import get_pool, get_settings
from api.problems import Problem, problem_responses
from api.settings import ApiSettings

router = APIRouter(tags=["access log"])

EventId = Annotated[int, Path(ge=1, le=MAX_EVENT_ID, description="Audit event id of the access")]
FlagId = Annotated[int, Path(ge=1, le=MAX_EVENT_ID, description="Privacy flag id")]


def _raise(refusal: service.Refusal) -> Problem:
    return Problem(refusal.status, refusal.code, refusal.detail)


@router.get(
    "/me/access-log",
    response_model=AccessLogPage,
    summary="Who viewed my record",
    description="For patients, of their own record: every access to it from the audit trail, newest first: "
    "who (staff by name and role; another patient never by name), when, what in plain words, whether it "
    "was allowed, and the reason given for emergency (break-glass) access, with the state of my flag if I "
    "raised one. My own actions are left out unless `include_mine=true`. Keyset pages: pass `next_cursor` "
    "as `cursor` with the same filters. Reading the log is itself audited. Other roles: 403.",
    responses=problem_responses(401, 403, 422),
)
async def my_access_log(
    query: Annotated[AccessLogQuery, Query()],
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> AccessLogPage:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.read_log(conn, principal, query)
    # Raised after the block so that the audit event of a refusal is committed.
    if isinstance(outcome, service.Refusal):
        raise _raise(outcome)
    return outcome


@router.post(
    "/me/access-log/{event_id}/flag",
    response_model=FlagRead,
    status_code=201,
    summary="I do not recognise this access",
    description="For patients: flags an access to my record for the privacy officer (the admins' queue), "
    "with an optional note. 201 with the new flag; 200 with the open one when the access is flagged "
    "already. An id that is not an access to my record answers 404.",
    responses={
        200: {"model": FlagRead, "description": "Already flagged: the open flag"},
        **problem_responses(401, 403, 404, 422),
    },
)
async def flag_access(
    event_id: EventId,
    principal: CurrentPrincipal,
    response: Response,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    body: Annotated[FlagRequest | None, Body()] = None,
) -> FlagRead:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.flag_event(conn, principal, event_id, body or FlagRequest())
    if isinstance(outcome, service.Refusal):
        raise _raise(outcome)
    flag, created = outcome
    if not created:
        response.status_code = 200
    return flag


@router.get(
    "/admin/privacy-flags",
    response_model=PrivacyFlagPage,
    summary="The privacy officer's queue of flagged accesses (admins)",
    description="Accesses patients did not recognise: open flags first, then reviewed ones, each oldest "
    "first, with the access as audited (who, role, when, what, and the break-glass reason). Keyset pages "
    "with `next_cursor`. Audited; other roles 403.",
    responses=problem_responses(401, 403, 422),
)
async def privacy_flags(
    query: Annotated[PrivacyFlagQuery, Query()],
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> PrivacyFlagPage:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.flag_queue(conn, principal, query)
    if isinstance(outcome, service.Refusal):
        raise _raise(outcome)
    return outcome


@router.post(
    "/admin/privacy-flags/{flag_id}/review",
    response_model=PrivacyFlagRead,
    summary="Close a flag with what was found (admins)",
    description="The outcome note is shown to the patient on their log: write it for them. A flag "
    "reviewed already answers 409. Audited; other roles 403.",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def review_privacy_flag(
    flag_id: FlagId,
    body: ReviewRequest,
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> PrivacyFlagRead:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.review_flag(conn, principal, flag_id, body)
    if isinstance(outcome, service.Refusal):
        raise _raise(outcome)
    return outcome
