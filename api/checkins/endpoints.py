"""HTTP endpoint of check-ins: a patient's level of consciousness (ACVPU)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from api.auth.dependencies import CurrentPrincipal
from api.checkins import service
from api.checkins.publisher import ReadingsPublisher
from api.checkins.schemas import ConsciousnessCheckIn, ConsciousnessRecorded
from api.db import Pool
from api.dependencies import get_pool, get_settings, utc_now
from api.problems import Problem, problem_responses
from api.settings import ApiSettings

router = APIRouter(tags=["check-ins"])

PatientId = Annotated[str, Path(min_length=1, max_length=64, description="Patient id")]


def get_readings_publisher(request: Request) -> ReadingsPublisher:
    publisher: ReadingsPublisher = request.app.state.readings_publisher
    return publisher


@router.post(
    "/patients/{patient_id}/consciousness",
    status_code=202,
    response_model=ConsciousnessRecorded,
    summary="Enter a patient's level of consciousness (ACVPU), scored in NEWS2",
    description="For the patient themself or a clinician of their care team. The observation is "
    "queued for storage and scoring (202): it shows in the patient's observations (metric "
    "`consciousness`, value A=0, C=1, V=2, P=3, U=4) and in NEWS2 for the plan's validity window.",
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def enter_consciousness(
    patient_id: PatientId,
    body: ConsciousnessCheckIn,
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    publisher: Annotated[ReadingsPublisher, Depends(get_readings_publisher)],
) -> ConsciousnessRecorded:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.record_consciousness(conn, publisher, principal, patient_id, body, utc_now())
    # Raised after the block so that the audit event of a refusal is committed.
    if isinstance(outcome, service.Refusal):
        headers = {"Retry-After": "5"} if outcome.status == 503 else None
        raise Problem(outcome.status, outcome.code, outcome.detail, headers=headers)
    return outcome
