"""HTTP endpoint of the audit query (admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.admin import service
from api.admin.schemas import AuditPage, AuditQuery
from api.auth.dependencies import CurrentPrincipal
from api.db import Pool
from api.dependencies import get_pool, get_settings
from api.problems import Problem, problem_responses
from api.settings import ApiSettings

router = APIRouter(tags=["audit"])


@router.get(
    "/audit-events",
    response_model=AuditPage,
    summary="Query the audit trail (admins)",
    description="Filter by patient, actor, action, resource, outcome and time range; newest first, keyset "
    "paging with `next_cursor`. The query itself is audited.",
    responses=problem_responses(401, 403, 422),
)
async def query_audit_events(
    query: Annotated[AuditQuery, Query()],
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> AuditPage:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.query_audit(conn, principal, query)
    if isinstance(outcome, service.Refusal):
        raise Problem(outcome.status, outcome.code, outcome.detail)
    return outcome
