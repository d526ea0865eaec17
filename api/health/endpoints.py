"""/healthz (the process is alive) and /readyz (its dependencies answer)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from api.db import Pool
from api.dependencies import get_pool, get_settings
from api.health import probes
from api.health.schemas import Liveness, Readiness
from api.problems import problem_response, problem_responses
from api.settings import ApiSettings

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Liveness, summary="Liveness: the process answers")
async def healthz() -> Liveness:
    # Deliberately checks nothing else: a dead database must not make the orchestrator
    # restart a healthy API process.
    return Liveness()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: database, Kafka and MQTT broker answer",
    responses=problem_responses(503),
)
async def readyz(
    request: Request,
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
            f"not ready: {', '.join(failing)} failing",
            headers={"Cache-Control": "no-store"},
            extensions={
                "failing": failing,
                "checks": {n: r.model_dump() for n, r in results.items()},
            },
        )
    return Readiness(checks=results)
