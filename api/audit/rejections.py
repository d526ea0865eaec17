"""The audit of requests refused before an endpoint ran (invalid path, query or body).

A signed-in caller who sends a request that fails validation (a NUL in a patient id, a
date out of range, ...) has still tried to reach something; the attempt is written to the
audit trail with who, which patient (when the id is a well-formed one), what was wrong
(locations and error types, never the values) and from where. Anonymous refusals are not
audited: there is nobody to name.
"""

from __future__ import annotations

import re
from typing import Any, Final

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from psycopg import OperationalError
from psycopg_pool import PoolTimeout
from starlette.responses import Response

from api.audit import repository
from api.audit.schemas import AuditEvent
from api.auth.dependencies import resolve_principal
from api.auth.schemas import Principal
from api.db import Pool
from api.problems import error_entries, request_path, validation_response
from api.settings import ApiSettings
from core.logging import get_logger

_PATIENT_ID: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_READS: Final = frozenset({"GET", "HEAD"})

log = get_logger(__name__)


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def _caller(request: Request) -> Principal | None:
    principal = getattr(request.state, "principal", None)
    if isinstance(principal, Principal):
        return principal
    token = _bearer(request)
    if token is None:
        return None
    outcome = await resolve_principal(request, token)
    return outcome if isinstance(outcome, Principal) else None


def rejection_event(request: Request, principal: Principal, errors: list[dict[str, Any]]) -> AuditEvent:
    route = request.scope.get("route")
    resource = getattr(route, "path", None) or request_path(request)[:256]
    patient_id = str(request.path_params.get("patient_id", ""))
    return AuditEvent(
        action="read" if request.method in _READS else "write",
        resource=resource,
        outcome="denied",
        actor_id=principal.user_id,
        actor_role=principal.role,
        patient_id=patient_id if _PATIENT_ID.fullmatch(patient_id) else None,
        detail={
            "reason": "invalid_request",
            "method": request.method,
            "errors": [{"loc": e["loc"], "type": e["type"]} for e in errors[:20]],
            "client_ip": principal.client_ip,
            "session_id": principal.session_id,
        },
    )


async def audit_rejection(request: Request, errors: list[dict[str, Any]]) -> None:
    """Write the audit event of a refused request when the caller is known."""
    settings: ApiSettings = request.app.state.settings
    try:
        principal = await _caller(request)
        if principal is None:
            return
        pool: Pool = request.app.state.pool
        async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
            await repository.record(conn, rejection_event(request, principal, errors))
    except (PoolTimeout, OperationalError) as exc:
        # The request is still the client's mistake (4xx); the missing audit row is ours.
        log.warning(
            "refused request not audited: database unavailable", path=request_path(request), error=type(exc).__name__
        )


async def handle_validation(request: Request, exc: Exception) -> Response:
    """RequestValidationError handler: audit (when the caller is known), then the 422 problem."""
    assert isinstance(exc, RequestValidationError)
    errors = error_entries(exc.errors())
    await audit_rejection(request, errors)
    return validation_response(request, errors)
