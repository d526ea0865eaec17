"""The inbox page (`/inbox`): the alerts of the clinician's care teams' patients, most severe
first and then oldest first, filtered by state and severity; acknowledge, snooze and resolve
with a disposition as plain forms (CSRF double submit, then a 303 back to the inbox).

`/inbox/rows` answers the same cards as an HTML fragment: the page's script (static/inbox.js)
fetches it when the alert stream (`GET /api/v1/alerts/stream`) says something changed. Reads
and transitions are the alerts service's (api/alerts), as its JSON routes use them: access,
audit and the lifecycle rules are there, not here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.alerts.schemas import AlertRead
from api.auth.schemas import Principal
from api.db import Pool
from api.dependencies import get_pool, get_settings, utc_now
from api.pages import alerts_source, cookies
from api.pages.session import copy_cookies, form_fields, page_principal, render
from api.pages.words import age_words
from api.settings import ApiSettings

router = APIRouter(include_in_schema=False)

AlertId = Annotated[str, Path(min_length=1, max_length=64)]
CSRF_REFUSED: Final = "This form has expired or did not come from this site. Reload the page and try again."
STATES: Final = (
    ("unresolved", "Not resolved"),
    ("open", "Open"),
    ("acknowledged", "Acknowledged"),
    ("snoozed", "Snoozed"),
    ("resolved", "Resolved"),
)
SEVERITIES: Final = (
    ("any", "Any severity"),
    ("critical", "Critical"),
    ("high", "High"),
    ("medium", "Medium"),
    ("low", "Low"),
    ("info", "Info"),
)
DISPOSITIONS: Final = (
    ("actionable", "Actionable"),
    ("not_actionable", "Not actionable"),
    ("false_reading", "False reading"),
    ("duplicate", "Duplicate"),
    ("other", "Other (say why in the note)"),
)
DISPOSITION_WORDS: Final = {**dict(DISPOSITIONS), "other": "Other", "self_resolved": "Resolved by itself"}
SNOOZES: Final = ((15, "15 minutes"), (30, "30 minutes"), (60, "1 hour"), (120, "2 hours"), (240, "4 hours"))
STATE_WORDS: Final = {"open": "Open", "acknowledged": "Acknowledged", "snoozed": "Snoozed", "resolved": "Resolved"}
DONE: Final = {
    "acknowledged": "The alert is acknowledged; its escalation has stopped.",
    "snoozed": "The alert is snoozed.",
    "resolved": "The alert is resolved.",
}


def filters_of(state: str | None, severity: str | None) -> dict[str, str]:
    """Known values only: anything else falls back to the default view."""
    return {
        "state": state if state in dict(STATES) else "unresolved",
        "severity": severity if severity in dict(SEVERITIES) else "any",
    }


def card(alert: AlertRead, now: datetime) -> dict[str, Any]:
    resolved_at = alert.resolved_at
    state_words = STATE_WORDS.get(alert.state, alert.state)
    if alert.state == "snoozed" and alert.snoozed_until is not None:
        state_words = f"Snoozed until {alert.snoozed_until:%H:%M} UTC"
    return {
        "id": str(alert.id),
        "patient_id": alert.patient_id,
        "severity": alert.severity,
        "state": alert.state,
        "state_words": state_words,
        "title": alert.title,
        "opened_iso": alert.opened_at.isoformat(),
        "age": age_words(alert.opened_at, now),
        "repeat_count": alert.repeat_count,
        "version": f"{alert.state}|{alert.updated_at.isoformat()}|{alert.repeat_count}",
        "disposition": alert.disposition,
        "disposition_words": DISPOSITION_WORDS.get(alert.disposition or "", alert.disposition),
        "note": alert.resolution_note,
        "resolved_age": age_words(resolved_at, now) if resolved_at else "",
    }


async def _cards(request: Request, principal: Principal, filters: dict[str, str]) -> tuple[list[dict[str, Any]], bool]:
    pool: Pool = get_pool(request)
    settings: ApiSettings = get_settings(request)
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        alerts, more = await alerts_source.inbox(conn, principal, filters["state"], filters["severity"])
    now = utc_now()
    return [card(a, now) for a in alerts], more


def _context(filters: dict[str, str]) -> dict[str, Any]:
    return {
        "section": "inbox",
        "filters": filters,
        "keep": filters,
        "state_choices": STATES,
        "severity_choices": SEVERITIES,
        "dispositions": DISPOSITIONS,
        "snooze_choices": SNOOZES,
    }


async def _inbox(
    request: Request, principal: Principal, filters: dict[str, str], *, status_code: int = 200, **extra: Any
) -> HTMLResponse:
    alerts, more = await _cards(request, principal, filters)
    return render(
        request,
        "inbox.html",
        status_code=status_code,
        principal=principal,
        alerts=alerts,
        more=more,
        **_context(filters),
        **extra,
    )


def _only_clinicians(request: Request, principal: Principal) -> HTMLResponse | None:
    if principal.role == "clinician":
        return None
    return render(request, "not_clinician.html", status_code=403, principal=principal)


@router.get("/inbox", response_class=HTMLResponse)
async def inbox_page(
    request: Request,
    state: Annotated[str | None, Query(max_length=20)] = None,
    severity: Annotated[str | None, Query(max_length=20)] = None,
    done: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    carrier = Response()
    principal = await page_principal(request, carrier)
    if principal is None:
        return RedirectResponse("/", status_code=303)
    refused = _only_clinicians(request, principal)
    if refused is not None:
        return copy_cookies(carrier, refused)
    page = await _inbox(request, principal, filters_of(state, severity), done=DONE.get(done or ""), error=None)
    return copy_cookies(carrier, page)


@router.get("/inbox/rows", response_class=HTMLResponse)
async def inbox_rows(
    request: Request,
    state: Annotated[str | None, Query(max_length=20)] = None,
    severity: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """The cards alone, for the page's live updates (401 without a session: the script
    sends the browser to the login page)."""
    carrier = Response()
    principal = await page_principal(request, carrier)
    if principal is None:
        return HTMLResponse("<p>Your session has ended. Log in again.</p>", status_code=401)
    if principal.role != "clinician":
        return HTMLResponse("<p>The inbox is for clinicians.</p>", status_code=403)
    filters = filters_of(state, severity)
    alerts, more = await _cards(request, principal, filters)
    page = render(request, "inbox_rows.html", principal=principal, alerts=alerts, more=more, **_context(filters))
    return copy_cookies(carrier, page)


async def _transition(request: Request, alert_id: str, action: str) -> Response:
    carrier = Response()
    principal = await page_principal(request, carrier)
    if principal is None:
        return RedirectResponse("/", status_code=303)
    refused = _only_clinicians(request, principal)
    if refused is not None:
        return copy_cookies(carrier, refused)
    form = await form_fields(request)
    filters = filters_of(form.get("state"), form.get("severity"))
    if not cookies.csrf_ok(request, form.get("csrf")):
        page = await _inbox(request, principal, filters, status_code=403, error=CSRF_REFUSED, done=None)
        return copy_cookies(carrier, page)
    error = _form_error(action, form)
    if error is None:
        pool: Pool = get_pool(request)
        settings: ApiSettings = get_settings(request)
        async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
            refusal = await alerts_source.transition(
                conn,
                principal,
                alert_id,
                action,
                minutes=int(form.get("minutes", "0") or 0) if action == "snooze" else None,
                disposition=form.get("disposition") if action == "resolve" else None,
                note=(form.get("note") or "").strip() or None,
                now=utc_now(),
            )
        if refusal is None:
            target = f"/inbox?{urlencode({**filters, 'done': DONE_KEY[action]})}"
            return copy_cookies(carrier, RedirectResponse(target, status_code=303))
        status, error = refusal
    else:
        status = 422
    page = await _inbox(request, principal, filters, status_code=status, error=error, done=None)
    return copy_cookies(carrier, page)


DONE_KEY: Final = {"acknowledge": "acknowledged", "snooze": "snoozed", "resolve": "resolved"}


def _form_error(action: str, form: dict[str, str]) -> str | None:
    """What the form itself got wrong, in words (before anything is asked of the service)."""
    if action == "snooze":
        minutes = form.get("minutes", "")
        if minutes not in {str(m) for m, _ in SNOOZES}:
            return "Choose how long to snooze the alert for."
    if action == "resolve":
        disposition = form.get("disposition", "")
        if disposition not in dict(DISPOSITIONS):
            return "Say whether the alert was actionable: choose one of the answers, then press Resolve."
        if disposition == "other" and not (form.get("note") or "").strip():
            return "“Other” needs a note saying why. Nothing was changed."
        if len(form.get("note") or "") > 2000:
            return "The note is too long (at most 2,000 characters). Nothing was changed."
    return None


@router.post("/inbox/{alert_id}/acknowledge", response_class=HTMLResponse)
async def acknowledge(request: Request, alert_id: AlertId) -> Response:
    return await _transition(request, alert_id, "acknowledge")


@router.post("/inbox/{alert_id}/snooze", response_class=HTMLResponse)
async def snooze(request: Request, alert_id: AlertId) -> Response:
    return await _transition(request, alert_id, "snooze")


@router.post("/inbox/{alert_id}/resolve", response_class=HTMLResponse)
async def resolve(request: Request, alert_id: AlertId) -> Response:
    return await _transition(request, alert_id, "resolve")


HISTORY_WORDS: Final = {
    "opened": "Opened",
    "retriggered": "Raised again",
    "acknowledged": "Acknowledged",
    "snoozed": "Snoozed",
    "unsnoozed": "Snooze ended",
    "assigned": "Assigned",
    "resolved": "Resolved",
    "escalated": "Escalated",
    "notified": "Notification sent",
    "note": "Note",
}


@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
async def alert_page(request: Request, alert_id: AlertId) -> Response:
    """One alert with its history and the inbox's actions: where e-mails and webhooks link to."""
    carrier = Response()
    principal = await page_principal(request, carrier)
    if principal is None:
        return RedirectResponse("/", status_code=303)
    refused = _only_clinicians(request, principal)
    if refused is not None:
        return copy_cookies(carrier, refused)
    pool: Pool = get_pool(request)
    settings: ApiSettings = get_settings(request)
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        found = await alerts_source.one(conn, principal, alert_id)
    if found is None:
        page = render(
            request,
            "message.html",
            status_code=404,
            principal=principal,
            title="Alert not found",
            message=alerts_source.NOT_FOUND.replace(" Nothing was changed.", ""),
        )
        return copy_cookies(carrier, page)
    now = utc_now()
    history = [
        {
            "words": HISTORY_WORDS.get(e.kind, e.kind.replace("_", " ").capitalize()),
            "iso": e.at.isoformat(),
            "at": f"{e.at:%Y-%m-%d %H:%M} UTC",
            "age": age_words(e.at, now),
            "by": "you" if e.actor_id == principal.user_id else ("a clinician" if e.actor_id else "the platform"),
            "note": e.note,
        }
        for e in found.history
    ]
    filters = filters_of(None, None)
    page = render(
        request,
        "alert.html",
        principal=principal,
        alerts=[card(found, now)],
        more=False,
        history=history,
        **_context(filters),
    )
    return copy_cookies(carrier, page)
