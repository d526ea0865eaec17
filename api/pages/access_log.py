"""The patient's page "Who viewed my record" (`/me/access-log`, ADR 0025): the access log in plain
words as cards, filters (who, dates in the patient's time zone, emergency access only, my own
visits too), older pages by cursor, and an "I don't recognise this" form per visit.

Calls the access-log service (api/accesslog) like the JSON routes do: the page read is the one
audit event of the log read; a flag is audited by the service.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from api.accesslog import repository, service, words
from api.accesslog.schemas import MAX_EVENT_ID, MAX_NOTE, AccessLogEntry, AccessLogQuery, FlagRequest
from api.db import Pool
from api.dependencies import get_pool, get_settings
from api.pages import cookies
from api.pages.session import copy_cookies, message_page, page_principal, render
from api.portal.text import t
from api.settings import ApiSettings

router = APIRouter(include_in_schema=False)

PAGE = "/me/access-log"
ROLE_CHOICES = ("clinician", "admin", "ops", "patient")
# Entries of one person this close together are one visit on the page (one card).
VISIT_GAP = timedelta(minutes=2)


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _day_start(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def _dates(raw_from: str, raw_to: str, zone: ZoneInfo) -> tuple[datetime | None, datetime | None, bool]:
    """[start, end) in UTC of the patient's local days `from` to `to` (both included); False when
    a date is not one or the range is backwards (then no date filter applies)."""
    try:
        first = date.fromisoformat(raw_from) if raw_from else None
        last = date.fromisoformat(raw_to) if raw_to else None
    except ValueError:
        return None, None, False
    if first is not None and last is not None and first > last:
        return None, None, False
    try:
        start = _day_start(first, zone) if first else None
        end = _day_start(last + timedelta(days=1), zone) if last else None
    except OverflowError:
        return None, None, False
    return start, end, True


def _joined(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return t("access.list_and", first=", ".join(parts[:-1]), last=parts[-1])


def _same_visit(newer: AccessLogEntry, older: AccessLogEntry) -> bool:
    return (
        (newer.who.name, newer.who.role, newer.who.is_me, newer.did, newer.outcome)
        == (older.who.name, older.who.role, older.who.is_me, older.did, older.outcome)
        and (newer.break_glass, newer.break_glass_reason) == (older.break_glass, older.break_glass_reason)
        and timedelta(0) <= newer.at - older.at <= VISIT_GAP
    )


def visits(entries: list[AccessLogEntry]) -> list[list[AccessLogEntry]]:
    """Newest-first entries in runs of one visit: the same person doing the same thing with the
    same outcome, each within VISIT_GAP of the next (a clinician's patient page reads the plan,
    the summary and five metrics at once: one card, not seven)."""
    runs: list[list[AccessLogEntry]] = []
    for entry in entries:
        if runs and _same_visit(runs[-1][-1], entry):
            runs[-1].append(entry)
        else:
            runs.append([entry])
    return runs


def _card(run: list[AccessLogEntry], zone: ZoneInfo) -> dict[str, Any]:
    """One card: the newest entry's time, outcome and id (flagged for the whole visit); the parts
    of the record in one sentence; the flag of the visit (an open one first)."""
    newest = run[0]
    flags = [e.flag for e in run if e.flag is not None]
    flag = next((f for f in flags if f.state == "open"), None) or max(
        flags, key=lambda f: f.reviewed_at or f.flagged_at, default=None
    )
    parts = list(dict.fromkeys(e.what for e in run))
    sentence = (
        newest.sentence
        if len(parts) == 1
        else words.sentence(
            newest.who.name,
            newest.who.role,
            is_me=newest.who.is_me,
            did=newest.did,
            what=_joined(parts),
            outcome=newest.outcome,
        )
    )
    return {
        "e": newest,
        "sentence": sentence,
        "flag": flag,
        "when": newest.at.astimezone(zone).strftime("%a %d %b %Y, %H:%M"),
        "reviewed_on": flag.reviewed_at.astimezone(zone).strftime("%d %b %Y") if flag and flag.reviewed_at else None,
    }


@router.get(PAGE, response_class=HTMLResponse)
async def access_log_page(
    request: Request,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    who: Annotated[str, Query(max_length=20)] = "",
    start: Annotated[str, Query(alias="from", max_length=20)] = "",
    end: Annotated[str, Query(alias="to", max_length=20)] = "",
    emergency: Annotated[str, Query(max_length=5)] = "",
    mine: Annotated[str, Query(max_length=5)] = "",
    cursor: Annotated[str, Query(max_length=64)] = "",
    flagged: Annotated[int | None, Query(ge=1, le=MAX_EVENT_ID)] = None,
) -> Response:
    carrier = Response()
    principal = await page_principal(request, carrier)
    if principal is None:
        return RedirectResponse("/", status_code=303)
    if principal.role != "patient" or principal.patient_id is None:
        return copy_cookies(carrier, message_page(request, principal, 403, t("access.title"), t("access.for_patients")))
    filters = {
        "who": who if who in ROLE_CHOICES else "",
        "from": start,
        "to": end,
        "emergency": emergency == "on",
        "mine": mine == "on",
    }
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        zone = _zone(await repository.patient_zone(conn, principal.patient_id))
        since, until, dates_ok = _dates(start, end, zone)
        asked: dict[str, Any] = {
            "role": filters["who"] or None,
            "start": since,
            "end": until,
            "break_glass": filters["emergency"],
            "include_mine": filters["mine"],
        }
        try:
            query = AccessLogQuery.model_validate({**asked, "cursor": cursor or None})
        except ValidationError:
            # A cursor from another filter or an old link: start again from the newest.
            query = AccessLogQuery.model_validate(asked)
        outcome = await service.read_log(conn, principal, query)
    if isinstance(outcome, service.Refusal):  # pragma: no cover - the role was checked above
        return copy_cookies(
            carrier, message_page(request, principal, outcome.status, t("access.title"), outcome.detail)
        )
    kept = {k: v for k, v in {"who": filters["who"], "from": start, "to": end}.items() if v}
    kept |= {k: "on" for k in ("emergency", "mine") if filters[k]}
    entries = [_card(run, zone) for run in visits(outcome.items)]
    page = render(
        request,
        "access_log.html",
        principal=principal,
        section="access-log",
        t=t,
        entries=entries,
        filters=filters,
        role_choices=[(role, t(f"access.role_filter.{role}")) for role in ROLE_CHOICES],
        dates_ok=dates_ok,
        zone=zone.key,
        older=f"{PAGE}?{urlencode({**kept, 'cursor': outcome.next_cursor})}" if outcome.next_cursor else None,
        paged=query.cursor is not None,
        newest=f"{PAGE}?{urlencode(kept)}" if kept else PAGE,
        flagged=flagged,
        max_note=MAX_NOTE,
    )
    return copy_cookies(carrier, page)


@router.post(PAGE + "/{event_id}/flag", response_class=HTMLResponse)
async def flag_from_page(
    request: Request,
    event_id: Annotated[int, Path(ge=1, le=MAX_EVENT_ID)],
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    csrf: Annotated[str, Form(max_length=200)] = "",
    note: Annotated[str, Form(max_length=MAX_NOTE)] = "",
) -> Response:
    carrier = Response()
    principal = await page_principal(request, carrier)
    if principal is None:
        return RedirectResponse("/", status_code=303)
    if not cookies.csrf_ok(request, csrf):
        return copy_cookies(carrier, message_page(request, principal, 403, t("access.title"), t("access.flag_expired")))
    try:
        body = FlagRequest(note=note)
    except ValidationError:
        body = FlagRequest()
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.flag_event(conn, principal, event_id, body)
    if isinstance(outcome, service.Refusal):
        if outcome.status == 404:
            page = message_page(request, principal, 404, t("access.not_found_title"), t("access.not_found"))
        else:
            page = message_page(request, principal, outcome.status, t("access.title"), t("access.for_patients"))
        return copy_cookies(carrier, page)
    target = f"{PAGE}?{urlencode({'flagged': event_id})}#entry-{event_id}"
    return copy_cookies(carrier, RedirectResponse(target, status_code=303))
