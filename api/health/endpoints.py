"""/healthz (the process is alive) and /readyz (its dependencies answer).

/readyz tells anonymous callers only whether the API is ready; the checks' details (broker
addresses, errors) go to ops and admin users only, as they map the internal network.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from psycopg import OperationalError
from psycopg_pool import PoolTimeout

from api.auth.dependencies import bearer_token, resolve_principal
from api.auth.schemas import Principal
from api.db import Pool
from api.dependencies import get_pool, get_settings
from api.health import probes
from api.health.schemas import Liveness, Readiness
from api.problems import problem_response, problem_responses
from api.settings import ApiSettings

router = APIRouter(tags=["health"])

DETAIL_ROLES: Final = frozenset({"ops", "admin"})


@router.get("/healthz", response_model=Liveness, summary="Liveness: the process answers")
async def healthz() -> Liveness:
    # Deliberately checks nothing else: a dead database must not make the orchestrator
    # restart a healthy API process.
    return Liveness()


async def _detail_allowed(request: Request, token: Annotated[str | None, Depends(bearer_token)]) -> bool:
    """True for a valid ops/admin token; anything else (no token, a bad one, the database
    away so that it cannot be checked) gets the minimal answer rather than an error."""
    if not token:
        return False
    try:
        outcome = await resolve_principal(request, token)
    except (PoolTimeout, OperationalError):
        return False
    return isinstance(outcome, Principal) and outcome.role in DETAIL_ROLES


@router.get(
    "/readyz",
    response_model=Readiness,
    response_model_exclude_none=True,
    summary="Readiness: database, Kafka and MQTT broker answer (details for ops and admin only)",
    responses=problem_responses(503),
)
async def readyz(
    request: Request,
    detailed: Annotated[bool, Depends(_detail_allowed)],
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> Readiness | JSONResponse:
    results = await probes.run_checks(pool, settings)
    failing = [name for name, result in results.items() if not result.ok]
    if failing:
        return problem_response(
            request,
            503,
            "not_ready",
            f"not ready: {', '.join(failing)} failing" if detailed else "not ready",
            extensions={"failing": failing, "checks": {n: r.model_dump() for n, r in results.items()}}
            if detailed
            else None,
        )
    return Readiness(checks=results if detailed else None)
