"""HTTP endpoints of consents: the patient's own tiers (read, give, withdraw) and a patient's
consents as their care team sees them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from api.auth.dependencies import CurrentPrincipal
from api.consents import service
from api.consents.schemas import ConsentChange, ConsentsRead, Tier
from api.db import Pool
from api.dependencies import get_pool, get_settings, utc_now
from api.problems import Problem, problem_responses
from api.settings import ApiSettings

router = APIRouter(tags=["consents"])

PatientId = Annotated[str, Path(min_length=1, max_length=64, description="Patient id")]
TierPath = Annotated[Tier, Path(description="`collect`, `share_care_team` or `research`")]

TIERS_DESCRIPTION = (
    "Tiers: `collect` (collect monitoring data: withdrawing it stops the bridge taking the patient's readings "
    f"within {service.COLLECT_STOP_WITHIN_S} s, they are then dead-lettered `no_consent`; stored readings stay), "
    "`share_care_team` (share with my care team: withdrawing it takes the patient from their care team's reach, "
    "record, lists, alert stream and notifications, except through break-glass; a patient who never recorded a "
    "choice on it shares, as agreed at enrolment), `research` (recorded). "
)


def _answer(outcome: ConsentsRead | service.Refusal) -> ConsentsRead:
    if isinstance(outcome, service.Refusal):
        raise Problem(outcome.status, outcome.code, outcome.detail)
    return outcome


@router.get(
    "/me/consents",
    response_model=ConsentsRead,
    summary="My consents: each tier now and the full history",
    description=TIERS_DESCRIPTION + "For a patient's own login; other roles 403.",
    responses=problem_responses(401, 403, 404),
)
async def my_consents(
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> ConsentsRead:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.read_mine(conn, principal)
    return _answer(outcome)


@router.post(
    "/me/consents/{tier}",
    response_model=ConsentsRead,
    summary="Give or withdraw one tier of my consent",
    description=TIERS_DESCRIPTION + "`give` names the document version read (the tier's `current_document_version`; "
    "another answers 422 `unknown_document_version`) and opens a new grant; `withdraw` closes the open one. "
    "Giving what is given answers 409 `already_given`, withdrawing what is not given 409 `not_given`. "
    "The answer is the consents after the change.",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def change_my_consent(
    tier: TierPath,
    body: ConsentChange,
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> ConsentsRead:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.change_mine(conn, principal, tier, body, utc_now())
    # Raised after the block so that the audit event of a refusal is committed.
    return _answer(outcome)


@router.get(
    "/patients/{patient_id}/consents",
    response_model=ConsentsRead,
    summary="A patient's consents",
    description=TIERS_DESCRIPTION + "For the patient, a clinician of their care team (or with break-glass) "
    "and admins; any other patient id is 404.",
    responses=problem_responses(401, 404, 422),
)
async def patient_consents(
    patient_id: PatientId,
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> ConsentsRead:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.read_patient(conn, principal, patient_id)
    return _answer(outcome)
