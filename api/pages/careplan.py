"""The care-plan editor page: the plan's limits as a form, a what-if (alerts the proposed limits
would have raised over the last N days vs the current plan) before saving, and save.

Calls the care-plan service (api/careplans) like its JSON routes do; access, audit, validation
and publishing are the service's.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.auth.schemas import Principal
from api.careplans import service
from api.careplans.endpoints import get_care_plan_publisher, get_what_if_limits
from api.careplans.publisher import CarePlanPublisher
from api.careplans.schemas import MAX_WHAT_IF_DAYS, CarePlanRead, CarePlanUpdate, WhatIfAnswer, WhatIfRequest
from api.db import Pool
from api.dependencies import get_pool, get_settings, utc_now
from api.pages import cookies
from api.pages.session import copy_cookies, form_fields, page_principal, render
from api.settings import ApiSettings
from core.careplan import DEFAULT_LIMITS, MAX_NOTE_CHARS, Limit

router = APIRouter(include_in_schema=False)

PatientId = Annotated[str, Path(min_length=1, max_length=64)]
CSRF_REFUSED = "This form has expired or did not come from this site. Reload the page and try again."


def limits_of(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every limit with every field (the plan's JSON leaves out defaults, a default plan its limits)."""
    raw = plan.get("limits")
    if raw is None:
        structs: Sequence[Limit] = DEFAULT_LIMITS
    elif isinstance(raw, list | tuple):
        try:
            structs = [msgspec.convert(limit, Limit) for limit in raw]
        except (msgspec.ValidationError, ValueError, TypeError):
            return [dict(limit) for limit in raw if isinstance(limit, dict)]
    else:
        return []
    return [{name: msgspec.to_builtins(getattr(s, name)) for name in s.__struct_fields__} for s in structs]


def _proposed(plan: dict[str, Any], form: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The stored plan with the form's limit values; errors in words for fields that are not numbers."""
    proposed = copy.deepcopy(plan)
    errors: list[str] = []
    limits = limits_of(proposed)
    for limit in limits:
        rule = str(limit.get("rule"))
        for field in ("raise_at", "clear_at"):
            raw = form.get(f"{rule}.{field}", "").strip()
            try:
                value = float(raw)
            except ValueError:
                errors.append(f"{rule.replace('_', ' ')}: {field.replace('_', ' ')} must be a number (got “{raw}”)")
                continue
            if not math.isfinite(value):
                errors.append(f"{rule.replace('_', ' ')}: {field.replace('_', ' ')} must be a number")
                continue
            limit[field] = value
        limit["enabled"] = form.get(f"{rule}.enabled") == "on"
    proposed["limits"] = limits
    if "note" in form:
        # The care team's words to the patient on their "My care plan" page (ADR 0027).
        note = form["note"].replace("\r\n", "\n").strip()
        if len(note) > MAX_NOTE_CHARS:
            errors.append(f"The note to the patient is {len(note)} characters; at most {MAX_NOTE_CHARS} fit.")
        proposed["note"] = note
    return proposed, errors


def _page(
    request: Request,
    principal: Principal,
    read: CarePlanRead,
    *,
    status_code: int = 200,
    shown: dict[str, Any] | None = None,
    errors: list[str] | None = None,
    answer: WhatIfAnswer | None = None,
    days: int = 7,
    saved: bool = False,
) -> HTMLResponse:
    return render(
        request,
        "care_plan.html",
        status_code=status_code,
        principal=principal,
        read=read,
        limits=limits_of(shown if shown is not None else read.plan),
        note=str((shown if shown is not None else read.plan).get("note") or ""),
        max_note=MAX_NOTE_CHARS,
        errors=errors or [],
        answer=answer,
        days=days,
        max_days=MAX_WHAT_IF_DAYS,
        saved=saved,
    )


def _not_found(request: Request, principal: Principal) -> HTMLResponse:
    return render(
        request,
        "message.html",
        status_code=404,
        principal=principal,
        title="Patient not found",
        message="There is no patient with this id among your patients.",
    )


@router.get("/patients/{patient_id}/care-plan", response_class=HTMLResponse)
async def care_plan_page(
    request: Request,
    patient_id: PatientId,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> Response:
    carrier = Response()
    principal = await page_principal(request, carrier)
    if principal is None:
        return RedirectResponse("/", status_code=303)
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        read = await service.read_plan(conn, principal, patient_id)
    if isinstance(read, service.Refusal):
        return copy_cookies(carrier, _not_found(request, principal))
    saved = request.query_params.get("saved") == "1"
    return copy_cookies(carrier, _page(request, principal, read, saved=saved))


@router.post("/patients/{patient_id}/care-plan", response_class=HTMLResponse)
async def care_plan_submit(
    request: Request,
    patient_id: PatientId,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    publisher: Annotated[CarePlanPublisher, Depends(get_care_plan_publisher)],
    limits: Annotated[service.WhatIfLimits, Depends(get_what_if_limits)],
) -> Response:
    carrier = Response()
    principal = await page_principal(request, carrier)
    if principal is None:
        return RedirectResponse("/", status_code=303)
    form = await form_fields(request)
    if not cookies.csrf_ok(request, form.get("csrf")):
        return render(
            request, "message.html", status_code=403, principal=principal, title="Form expired", message=CSRF_REFUSED
        )
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        read = await service.read_plan(conn, principal, patient_id)
    if isinstance(read, service.Refusal):
        return copy_cookies(carrier, _not_found(request, principal))
    proposed, errors = _proposed(read.plan, form)
    try:
        days = int(form.get("days", "7"))
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_WHAT_IF_DAYS:
        errors.append(f"Days must be a whole number from 1 to {MAX_WHAT_IF_DAYS}.")
        days = 7
    try:
        version = int(form.get("version", ""))
    except ValueError:
        version = -1
    if errors:
        page = _page(request, principal, read, status_code=422, shown=proposed, errors=errors, days=days)
        return copy_cookies(carrier, page)
    if form.get("action") == "save":
        async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
            outcome = await service.update_plan(
                conn,
                publisher,
                principal,
                patient_id,
                CarePlanUpdate(plan=proposed, version=max(version, 0)),
                None,
                utc_now(),
            )
        if isinstance(outcome, service.Refusal):
            page = _page(
                request,
                principal,
                read,
                status_code=outcome.status,
                shown=proposed,
                errors=[_sentence(outcome.detail)],
                days=days,
            )
            return copy_cookies(carrier, page)
        return copy_cookies(carrier, RedirectResponse(f"/patients/{patient_id}/care-plan?saved=1", status_code=303))
    # What-if: the same three steps as the JSON route (the connection is given back during the replay).
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        work = await service.prepare_what_if(
            conn, principal, patient_id, WhatIfRequest(plan=proposed, days=days), utc_now(), limits.max_readings
        )
    answer: WhatIfAnswer | service.Refusal
    if isinstance(work, service.Refusal):
        answer = work
    else:
        results = await service.run_what_if(work, limits)
        async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
            answer = await service.finish_what_if(conn, principal, work, results)
    if isinstance(answer, service.Refusal):
        page = _page(
            request,
            principal,
            read,
            status_code=answer.status,
            shown=proposed,
            errors=[_sentence(answer.detail)],
            days=days,
        )
    else:
        page = _page(request, principal, read, shown=proposed, answer=answer, days=days)
    return copy_cookies(carrier, page)


def _sentence(detail: str) -> str:
    return detail[:1].upper() + detail[1:] + ("" if detail.endswith(".") else ".")
