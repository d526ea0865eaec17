"""HTTP endpoints of break-glass access: open a grant to a patient outside one's care teams,
list one's active grants."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from api.access import repository
from api.access.schemas import BreakGlassGrant, BreakGlassList, BreakGlassRequest
from api.audit import repository as audit_repository
from api.audit.schemas import AuditEvent, AuditOutcome
from api.auth.dependencies import CurrentPrincipal
from api.db import Pool
from api.dependencies import get_pool, get_settings
from api.problems import Problem, problem_responses
from api.settings import ApiSettings

router = APIRouter(tags=["break-glass"])

PatientId = Annotated[str, Path(min_length=1, max_length=64, description="Patient id")]
RESOURCE = "break_glass"


@router.post(
    "/patients/{patient_id}/break-glass",
    status_code=201,
    response_model=BreakGlassGrant,
    summary="Emergency access to a patient outside one's care teams",
    description="For clinicians only. The reason is kept with the grant; the access lasts the given "
    "minutes (at most 4 h) and every request under it is audited with `break_glass: true` and the "
    "grant id. A patient of one's own care teams needs no grant (409). After expiry the patient "
    "answers 404 again.",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def open_break_glass(
    patient_id: PatientId,
    body: BreakGlassRequest,
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> BreakGlassGrant:
    refusal: Problem | None = None
    grant: BreakGlassGrant | None = None
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:

        async def audit(outcome: AuditOutcome, **detail: object) -> None:
            event = AuditEvent(
                action="create",
                resource=RESOURCE,
                outcome=outcome,
                actor_id=principal.user_id,
                actor_role=principal.role,
                patient_id=patient_id,
                detail={"duration_minutes": body.duration_minutes, "client_ip": principal.client_ip, **detail},
            )
            await audit_repository.record(conn, event)

        if principal.role != "clinician":
            await audit("denied", reason="role")
            refusal = Problem(403, "role_not_allowed", "only clinicians open break-glass access")
        elif not await repository.patient_exists(conn, patient_id):
            await audit("denied", reason="not_found")
            refusal = Problem(404, "patient_not_found", f"no patient {patient_id!r}")
        elif await repository.clinician_cares_for(conn, principal.user_id, patient_id):
            await audit("denied", reason="own_care_team")
            refusal = Problem(409, "break_glass_not_needed", "this patient is on one of your care teams")
        else:
            grant = await repository.open_break_glass(
                conn, principal.user_id, patient_id, body.reason, body.duration_minutes
            )
            await audit(
                "allowed", break_glass=True, break_glass_grant=str(grant.id), expires_at=grant.expires_at.isoformat()
            )
    if refusal is not None:
        raise refusal
    assert grant is not None
    return grant


@router.get(
    "/me/break-glass",
    response_model=BreakGlassList,
    summary="My active break-glass grants",
    responses=problem_responses(401),
)
async def my_break_glass(
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> BreakGlassList:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        items = await repository.list_active_break_glass(conn, principal.user_id)
        await audit_repository.record(
            conn,
            AuditEvent(
                action="read",
                resource=RESOURCE,
                outcome="allowed",
                actor_id=principal.user_id,
                actor_role=principal.role,
                detail={"returned": len(items), "client_ip": principal.client_ip},
            ),
        )
    return BreakGlassList(items=items)
