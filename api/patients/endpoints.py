"""HTTP endpoints of the patients API: my patients, the patient summary and observation rollups."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from api.auth.dependencies import CurrentPrincipal
from api.db import Pool
from api.dependencies import get_pool, get_settings, utc_now
from api.patients import service
from api.patients.schemas import (
    DEFAULT_LIMIT,
    MAX_CURSOR_LENGTH,
    MAX_LIMIT,
    PatientList,
    PatientSummary,
    RollupPage,
    RollupQuery,
    decode_cursor,
)
from api.problems import Problem, problem_responses
from api.settings import ApiSettings

router = APIRouter(tags=["patients"])

PatientId = Annotated[str, Path(min_length=1, max_length=64, description="Patient id")]


def _not_found(patient_id: str) -> Problem:
    # 404 and not 403, so that a caller cannot learn which patient ids exist.
    return Problem(404, "patient_not_found", f"no patient {patient_id!r} among the patients you can see")


@router.get(
    "/patients",
    response_model=PatientList,
    summary="My patients: the care teams' patients, the most urgent first",
    description="A clinician's care teams' patients (an admin: every patient; other roles 403), ordered by "
    "the most severe unresolved alert, then the number of unresolved alerts, then id. Each with its latest "
    "NEWS2 (parameters not scored named), each device's last reading and its age (silent devices flagged), "
    "and adherence to the care plan's schedules over the last 7 days. Keyset pages: pass `next_cursor` as "
    "`cursor`.",
    responses=problem_responses(401, 403, 422),
)
async def list_patients(
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Patients per page")] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH, description="next_cursor of a page")] = None,
) -> PatientList:
    after = None if cursor is None else decode_cursor(cursor)
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        if cursor is not None and after is None:
            refusal = service.Refusal(
                422, "invalid_cursor", "cursor is not a next_cursor of this list; start without one"
            )
            await service.refuse(conn, principal, "patients", None, refusal)
        else:
            refusal = None
            outcome = await service.my_patients(conn, principal, utc_now(), limit, after)
            if isinstance(outcome, service.Refusal):
                refusal = outcome
    if refusal is not None:
        raise Problem(refusal.status, refusal.code, refusal.detail)
    assert isinstance(outcome, PatientList)
    return outcome


@router.get(
    "/patients/{patient_id}/summary",
    response_model=PatientSummary,
    summary="One patient on one screen",
    description="Latest value of each vital measured in the last 7 days with its age and 24-hour trend "
    "(hourly buckets and slope), NEWS2 with the parameters it could not score, unresolved alerts, "
    "measurement and medication adherence over 7 days, data completeness of continuous devices over "
    "24 h, and each device with its last reading and battery. Any patient the caller may not see is 404.",
    responses=problem_responses(401, 404, 422),
)
async def patient_summary(
    patient_id: PatientId,
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> PatientSummary:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        found = await service.summary(conn, principal, patient_id, utc_now(), commit=True)
    # Raised after the block so the audit event of the denied read is committed.
    if found is None:
        raise _not_found(patient_id)
    return found


@router.get(
    "/patients/{patient_id}/observations/rollups",
    response_model=RollupPage,
    summary="A patient's observations of one metric in time buckets",
    description="Count, mean, minimum and maximum per bucket (`time_bucket`, aligned to UTC midnight) over "
    "[start, end) (at most 31 days), buckets without readings left out.",
    responses=problem_responses(401, 404, 422),
)
async def observation_rollups(
    patient_id: PatientId,
    query: Annotated[RollupQuery, Query()],
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> RollupPage:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        page = await service.rollups(conn, principal, patient_id, query)
    if page is None:
        raise _not_found(patient_id)
    return page
