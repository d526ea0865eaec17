"""HTTP endpoints of the patient's own record: `GET /me/health` and `GET /me/care-plan` (ADR 0027)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.auth.dependencies import CurrentPrincipal
from api.db import Pool
from api.dependencies import get_pool, get_settings, utc_now
from api.portal import service
from api.portal.schemas import MyCarePlan, MyHealth
from api.problems import Problem, problem_responses
from api.settings import ApiSettings

router = APIRouter(tags=["me"])


@router.get(
    "/me/health",
    response_model=MyHealth,
    summary="My health: my own readings, what they mean, my score, alerts and devices",
    description="For a signed-in patient only (any other role: 403 `not_a_patient`): the latest value of each "
    "vital measured in the last 7 days with its age, hourly trends over 24 h and 7 days, the care plan's "
    "limits and a plain-words sentence of what the reading means and what happens next; the NEWS2 score "
    "explained; unresolved alerts in plain words (no rule ids); devices with their last reading and battery. "
    "One audit event per call.",
    responses=problem_responses(401, 403, 404),
)
async def my_health(
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> MyHealth:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.my_health(conn, principal, utc_now())
    # Raised after the block so the audit event of a refused read is committed.
    if isinstance(outcome, service.Refusal):
        raise Problem(outcome.status, outcome.code, outcome.detail)
    return outcome


@router.get(
    "/me/care-plan",
    response_model=MyCarePlan,
    summary="My care plan in plain words, with how I kept it",
    description="For a signed-in patient only (any other role: 403 `not_a_patient`): measurement and "
    "medication times in the plan's time zone, when the care team is told and the team's note on why, "
    "adherence per week over the last 4 weeks (days fully kept, share of planned readings and doses "
    "received), streaks of kept days, and the lessons that fit the plan. One audit event per call.",
    responses=problem_responses(401, 403, 404),
)
async def my_care_plan(
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> MyCarePlan:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.my_care_plan(conn, principal, utc_now())
    if isinstance(outcome, service.Refusal):
        raise Problem(outcome.status, outcome.code, outcome.detail)
    return outcome
