"""HTTP endpoints of care plans: read, change, what-if."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request, Response

from api.auth.dependencies import CurrentPrincipal
from api.careplans import service
from api.careplans.publisher import CarePlanPublisher
from api.careplans.schemas import CarePlanRead, CarePlanUpdate, WhatIfAnswer, WhatIfRequest
from api.db import Pool
from api.dependencies import get_pool, get_settings, utc_now
from api.problems import Problem, problem_responses
from api.settings import ApiSettings

router = APIRouter(tags=["care plans"])

PatientId = Annotated[str, Path(min_length=1, max_length=64, description="Patient id")]
_ETAG_HEADER: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            "ETag": {
                "description": 'The plan\'s version, e.g. "3": send it back as If-Match',
                "schema": {"type": "string"},
            }
        }
    }
}


def get_care_plan_publisher(request: Request) -> CarePlanPublisher:
    publisher: CarePlanPublisher = request.app.state.care_plan_publisher
    return publisher


def get_what_if_limits(request: Request) -> service.WhatIfLimits:
    limits: service.WhatIfLimits = request.app.state.what_if_limits
    return limits


def _raise(refusal: service.Refusal) -> Problem:
    return Problem(refusal.status, refusal.code, refusal.detail, headers=refusal.headers)


@router.get(
    "/patients/{patient_id}/care-plan",
    response_model=CarePlanRead,
    summary="A patient's care plan (limits, schedules, version)",
    description="The stored plan, or the default plan (version 0) of a patient without one. The `ETag` "
    "header carries the version, for `If-Match` on a change.",
    responses={**problem_responses(401, 404), **_ETAG_HEADER},
)
async def read_care_plan(
    patient_id: PatientId,
    principal: CurrentPrincipal,
    response: Response,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> CarePlanRead:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.read_plan(conn, principal, patient_id)
    if isinstance(outcome, service.Refusal):
        raise _raise(outcome)
    response.headers["ETag"] = service.etag(outcome.version)
    return outcome


@router.put(
    "/patients/{patient_id}/care-plan",
    response_model=CarePlanRead,
    summary="Change a patient's care plan",
    description="For a clinician of the patient's care team or an admin. The plan is validated like the "
    "stream worker validates it, stored as the next version and published to `rpm.care-plans.v1` before "
    "the answer; send the version replaced as `If-Match` (412 when stale) or as `version` (409 when "
    "stale); neither: 428. When Kafka does not take the plan nothing is stored (503).",
    responses={**problem_responses(401, 403, 404, 409, 412, 422, 428, 503), **_ETAG_HEADER},
)
async def update_care_plan(
    patient_id: PatientId,
    body: CarePlanUpdate,
    principal: CurrentPrincipal,
    response: Response,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    publisher: Annotated[CarePlanPublisher, Depends(get_care_plan_publisher)],
    if_match: Annotated[str | None, Header(max_length=64, description='ETag of the plan read, e.g. "3"')] = None,
) -> CarePlanRead:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.update_plan(conn, publisher, principal, patient_id, body, if_match, utc_now())
    if isinstance(outcome, service.Refusal):
        raise _raise(outcome)
    response.headers["ETag"] = service.etag(outcome.version)
    return outcome


@router.post(
    "/patients/{patient_id}/care-plan/what-if",
    response_model=WhatIfAnswer,
    summary="How many alerts a proposed plan would have raised over the last N days",
    description="Replays the patient's stored readings of the last `days` days through the stream "
    "worker's detectors, once with the current plan and once with the proposed one; nothing is stored. "
    "Bounded: at most RPM_WHAT_IF_MAX_READINGS readings (422 beyond) and RPM_WHAT_IF_TIMEOUT seconds (503).",
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def what_if(
    patient_id: PatientId,
    body: WhatIfRequest,
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    limits: Annotated[service.WhatIfLimits, Depends(get_what_if_limits)],
) -> WhatIfAnswer:
    # Two transactions: the connection is given back while the replay runs in a thread.
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        work = await service.prepare_what_if(conn, principal, patient_id, body, utc_now(), limits.max_readings)
    if isinstance(work, service.Refusal):
        raise _raise(work)
    results = await service.run_what_if(work, limits)
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.finish_what_if(conn, principal, work, results)
    if isinstance(outcome, service.Refusal):
        raise _raise(outcome)
    return outcome
