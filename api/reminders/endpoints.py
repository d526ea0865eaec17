"""HTTP endpoints of a patient's reminders and profile (ADR 0026)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from api.auth.dependencies import CurrentPrincipal
from api.db import Pool
from api.dependencies import get_pool, get_settings, utc_now
from api.problems import Problem, problem_responses
from api.reminders import service
from api.reminders.schemas import ProfileRead, ProfileUpdate, ReminderList, ReminderQuery, ReminderRead
from api.settings import ApiSettings

router = APIRouter(tags=["reminders and profile"])

ReminderId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Reminder id")]


def _raise(refusal: service.Refusal) -> Problem:
    return Problem(refusal.status, refusal.code, refusal.detail)


@router.get(
    "/me/reminders",
    response_model=ReminderList,
    summary="My reminders",
    description="For patients: the reminders of my care plan's measurement and medication schedules, those "
    "coming up (queued, soonest first) and those of the last `days` days with how each ended (sent, cancelled "
    "because the reading came first, skipped in quiet hours, ...), in plain words too. Audited once. "
    "Other roles: 403.",
    responses=problem_responses(401, 403, 422),
)
async def my_reminders(
    query: Annotated[ReminderQuery, Query()],
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> ReminderList:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.list_reminders(conn, principal, query, utc_now())
    # Raised after the block so that the audit event of a refusal is committed.
    if isinstance(outcome, service.Refusal):
        raise _raise(outcome)
    return outcome


@router.post(
    "/me/reminders/{reminder_id}/seen",
    response_model=ReminderRead,
    summary="Mark a reminder seen",
    description="For patients: marks one of my sent reminders as seen (the first time counts). Any id that "
    "is not a sent reminder of mine answers 404.",
    responses=problem_responses(401, 403, 404, 422),
)
async def mark_seen(
    reminder_id: ReminderId,
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> ReminderRead:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.mark_seen(conn, principal, reminder_id, utc_now())
    if isinstance(outcome, service.Refusal):
        raise _raise(outcome)
    return outcome


@router.get(
    "/me/profile",
    response_model=ProfileRead,
    summary="My profile: contact e-mail and reminder choices",
    description="For patients: my contact e-mail, how reminders reach me (in the app, by e-mail), my quiet "
    "hours and time zone. Without a saved profile: in-app reminders only, no quiet hours, the care plan's "
    "time zone. Audited once. Other roles: 403.",
    responses=problem_responses(401, 403),
)
async def my_profile(
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> ProfileRead:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.read_profile(conn, principal)
    if isinstance(outcome, service.Refusal):
        raise _raise(outcome)
    return outcome


@router.put(
    "/me/profile",
    response_model=ProfileRead,
    summary="Change my profile",
    description="For patients: replaces my profile. E-mail reminders need an address; quiet hours need both "
    "times (they may wrap midnight) and two different times; the time zone is an IANA name or null (the care "
    "plan's). 422 with the reason otherwise. The alert service uses the new choices from its next round. "
    "Audited once (the fields changed, not their values).",
    responses=problem_responses(401, 403, 422),
)
async def change_profile(
    body: ProfileUpdate,
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> ProfileRead:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.update_profile(conn, principal, body, utc_now())
    if isinstance(outcome, service.Refusal):
        raise _raise(outcome)
    return outcome
