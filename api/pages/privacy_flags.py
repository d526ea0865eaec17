"""The privacy officer's page (`/admin/privacy-flags`, ADR 0025): the open flags patients raised
on accesses to their record they did not recognise, oldest first, each with the access as
audited (who, role, when, what, outcome, break-glass reason), the patient's words and when they
flagged it, and a form to close it with an outcome note (which the patient then reads).

Calls the access-log service (api/accesslog) like the JSON routes `GET /api/v1/admin/privacy-flags`
and `POST .../{id}/review` do: the role check, the audit events (one per page read, one per
review, refusals included) and the rules (409 when reviewed already) are the service's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from api.accesslog import service
from api.accesslog.schemas import (
    MAX_EVENT_ID,
    MAX_OUTCOME_NOTE,
    MAX_QUEUE_LIMIT,
    PrivacyFlagQuery,
    PrivacyFlagRead,
    ReviewRequest,
)
from api.admin import repository as admin_repository
from api.auth.schemas import Principal
from api.db import Pool
from api.dependencies import get_pool, get_settings, utc_now
from api.pages import cookies
from api.pages.session import copy_cookies, form_fields, message_page, page_principal, render
from api.pages.words import age_words
from api.settings import ApiSettings

router = APIRouter(include_in_schema=False)

PAGE: Final = "/admin/privacy-flags"
TITLE: Final = "Privacy flags"
REFUSED: Final = (
    "This page is for the privacy officer (an admin account). Your account cannot see or close "
    "privacy flags; nothing was shown or changed."
)
CSRF_REFUSED: Final = "This form has expired or did not come from this site. Reload the page and try again."
ROLE_WORDS: Final = {"clinician": "clinician", "admin": "admin", "ops": "ops", "patient": "patient"}
OUTCOME_WORDS: Final = {"allowed": "allowed", "denied": "blocked", "error": "failed"}


def _when(ts: datetime, now: datetime) -> dict[str, str]:
    return {"iso": ts.isoformat(), "text": f"{ts:%Y-%m-%d %H:%M} UTC", "age": age_words(ts, now)}


def card(flag: PrivacyFlagRead, patient_names: dict[str, str], now: datetime) -> dict[str, Any]:
    """One open flag as the page shows it."""
    event = flag.event
    if event.actor_role == "patient" and event.actor_name is None:
        who = "a patient account"
    else:
        who = event.actor_name or (f"user {event.actor_id}" if event.actor_id else "the platform")
    return {
        "id": flag.id,
        "patient_id": flag.patient_id,
        "patient_name": patient_names.get(flag.patient_id),
        "note": flag.note,
        "flagged": _when(flag.flagged_at, now),
        "event_id": event.id,
        "who": who,
        "actor_id": event.actor_id,
        "role": ROLE_WORDS.get(event.actor_role or "", event.actor_role or "unknown role"),
        "at": _when(event.at, now),
        "what": f"{event.action} {event.resource}",
        "outcome": OUTCOME_WORDS.get(event.outcome, event.outcome),
        "break_glass": event.break_glass,
        "break_glass_reason": event.break_glass_reason,
    }


async def _queue_page(
    request: Request,
    carrier: Response,
    principal: Principal,
    *,
    status_code: int = 200,
    error: str | None = None,
    error_flag: int | None = None,
    note: str = "",
    done: int | None = None,
) -> Response:
    pool: Pool = get_pool(request)
    settings: ApiSettings = get_settings(request)
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        # The service checks the role and audits the read (or the refusal) once.
        page = await service.flag_queue(conn, principal, PrivacyFlagQuery(state="open", limit=MAX_QUEUE_LIMIT))
        names = (
            {}
            if isinstance(page, service.Refusal)
            else await admin_repository.patient_names(conn, sorted({f.patient_id for f in page.items}))
        )
    if isinstance(page, service.Refusal):
        return copy_cookies(carrier, message_page(request, principal, page.status, TITLE, REFUSED))
    now = utc_now()
    html = render(
        request,
        "admin_privacy_flags.html",
        status_code=status_code,
        principal=principal,
        section="privacy-flags",
        flags=[card(f, names, now) for f in page.items],
        more=page.next_cursor is not None,
        error=error,
        error_flag=error_flag,
        note=note,
        done=done,
        max_note=MAX_OUTCOME_NOTE,
    )
    return copy_cookies(carrier, html)


@router.get(PAGE, response_class=HTMLResponse)
async def privacy_flags_page(
    request: Request,
    done: Annotated[int | None, Query(ge=1, le=MAX_EVENT_ID)] = None,
) -> Response:
    carrier = Response()
    principal = await page_principal(request, carrier)
    if principal is None:
        return RedirectResponse("/", status_code=303)
    return await _queue_page(request, carrier, principal, done=done)


@router.post(PAGE + "/{flag_id}/review", response_class=HTMLResponse)
async def review_from_page(
    request: Request,
    flag_id: Annotated[int, Path(ge=1, le=MAX_EVENT_ID)],
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> Response:
    carrier = Response()
    principal = await page_principal(request, carrier)
    if principal is None:
        return RedirectResponse("/", status_code=303)
    form = await form_fields(request)
    note = form.get("outcome_note", "")[: MAX_OUTCOME_NOTE + 1]
    if not cookies.csrf_ok(request, form.get("csrf")):
        if principal.role != "admin":
            return copy_cookies(carrier, message_page(request, principal, 403, TITLE, REFUSED))
        return await _queue_page(
            request, carrier, principal, status_code=403, error=CSRF_REFUSED, error_flag=flag_id, note=note
        )
    try:
        body = ReviewRequest(outcome_note=note)
    except ValidationError:
        if principal.role != "admin":
            return copy_cookies(carrier, message_page(request, principal, 403, TITLE, REFUSED))
        error = (
            f"Write what you found for the patient (1 to {MAX_OUTCOME_NOTE:,} characters, no control "
            "characters), then press Close flag. Nothing was changed."
        )
        return await _queue_page(
            request, carrier, principal, status_code=422, error=error, error_flag=flag_id, note=note
        )
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.review_flag(conn, principal, flag_id, body)
    if isinstance(outcome, service.Refusal):
        if outcome.status == 403:
            return copy_cookies(carrier, message_page(request, principal, 403, TITLE, REFUSED))
        words = {
            404: f"There is no privacy flag {flag_id}. Nothing was changed.",
            409: f"Flag {flag_id} was closed already (perhaps by another admin). Nothing was changed.",
        }
        return await _queue_page(
            request, carrier, principal, status_code=outcome.status, error=words.get(outcome.status, outcome.detail)
        )
    return copy_cookies(carrier, RedirectResponse(f"{PAGE}?done={flag_id}", status_code=303))
