"""HTTP endpoints of observation reads."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from api.auth.dependencies import CurrentPrincipal
from api.db import Pool
from api.dependencies import get_pool, get_settings
from api.observations import service
from api.observations.schemas import ObservationPage, ObservationQuery
from api.problems import Problem, problem_responses
from api.settings import ApiSettings

router = APIRouter(tags=["observations"])

PatientId = Annotated[str, Path(min_length=1, max_length=64, description="Patient id")]


@router.get(
    "/patients/{patient_id}/observations",
    response_model=ObservationPage,
    summary="A patient's observations of one metric in a time range",
    responses=problem_responses(401, 404, 422),
)
async def list_observations(
    patient_id: PatientId,
    query: Annotated[ObservationQuery, Query()],
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> ObservationPage:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        page = await service.read_observations(conn, principal, patient_id, query)
    # Raised after the block so the audit event of the denied read is committed; 404 and
    # not 403 so that a caller cannot learn which patient ids exist.
    if page is None:
        raise Problem(404, "patient_not_found", f"no patient {patient_id!r} among the patients you can see")
    return page
