"""The patient's pages "Reminders" (`/me/reminders`) and "Profile" (`/me/profile`) (ADR 0026):
reminders coming up and recent ones with how each ended, in plain words and in the patient's
time zone; the profile as a form (contact e-mail, channels, quiet hours, time zone) with CSRF.

Calls the reminders service (api/reminders) like the JSON routes do: access, audit and
validation are the service's and the schema's.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from api.auth.schemas import Principal
from api.db import Conn, Pool
from api.dependencies import get_pool, get_settings, utc_now
from api.pages import cookies
from api.pages.session import copy_cookies, form_fields, message_page, page_principal, render
from api.portal.text import t
from api.reminders import repository, service
from api.reminders.schemas import ProfileRead, ProfileUpdate, ReminderQuery, ReminderRead
from api.settings import ApiSettings

router = APIRouter(include_in_schema=False)

REMINDERS_PAGE = "/me/reminders"
PROFILE_PAGE = "/me/profile"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _local(ts: datetime, zone: ZoneInfo) -> str:
    return ts.astimezone(zone).strftime("%a %d %b, %H:%M")


def _card(r: ReminderRead, zone: ZoneInfo, now: datetime) -> dict[str, Any]:
    return {
        "r": r,
        "open": r.state == "sent" and r.window_end > now,
        "due": _local(r.due_at, zone),
        "until": r.window_end.astimezone(zone).strftime("%H:%M"),
        "channel": t(f"reminders.channel.{r.channel}"),
    }


@router.get(REMINDERS_PAGE, response_class=HTMLResponse)
async def reminders_page(
    request: Request,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> Response:
    carrier = Response()
    principal = await page_principal(request, carrier)
    if principal is None:
        return RedirectResponse("/", status_code=303)
    if principal.role != "patient" or principal.patient_id is None:
        page = message_page(request, principal, 403, t("reminders.title"), t("reminders.for_patients"))
        return copy_cookies(carrier, page)
    now = utc_now()
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        listed = await service.list_reminders(conn, principal, ReminderQuery(), now)
        # The zone only: the profile's read is not a second audited read of health data.
        zone_name = await _effective_zone(conn, principal.patient_id)
    if isinstance(listed, service.Refusal):  # pragma: no cover - the role was checked above
        return copy_cookies(
            carrier, message_page(request, principal, listed.status, t("reminders.title"), listed.detail)
        )
    zone = _zone(zone_name)
    page = render(
        request,
        "me_reminders.html",
        principal=principal,
        section="reminders",
        t=t,
        pending=[_card(r, zone, now) for r in listed.pending],
        recent=[_card(r, zone, now) for r in listed.recent],
        zone=zone.key,
    )
    return copy_cookies(carrier, page)


async def _effective_zone(conn: Conn, patient_id: str) -> str:
    prefs = await repository.preferences(conn, patient_id)
    if prefs is not None and prefs.time_zone:
        return prefs.time_zone
    return await repository.plan_zone(conn, patient_id) or "UTC"


@router.post(REMINDERS_PAGE + "/{reminder_id}/seen", response_class=HTMLResponse)
async def seen_from_page(
    request: Request,
    reminder_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    carrier = Response()
    principal = await page_principal(request, carrier)
    if principal is None:
        return RedirectResponse("/", status_code=303)
    if not cookies.csrf_ok(request, csrf):
        return copy_cookies(carrier, message_page(request, principal, 403, t("reminders.title"), t("profile.expired")))
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.mark_seen(conn, principal, reminder_id, utc_now())
    if isinstance(outcome, service.Refusal):
        text = t("reminders.for_patients")
        return copy_cookies(carrier, message_page(request, principal, outcome.status, t("reminders.title"), text))
    return copy_cookies(carrier, RedirectResponse(f"{REMINDERS_PAGE}#reminder-{reminder_id}", status_code=303))


def _form_of(profile: ProfileRead) -> dict[str, Any]:
    return {
        "email": profile.email or "",
        "in_app": "in_app" in profile.channels,
        "by_email": "email" in profile.channels,
        "quiet_start": profile.quiet_start.strftime("%H:%M") if profile.quiet_start else "",
        "quiet_end": profile.quiet_end.strftime("%H:%M") if profile.quiet_end else "",
        "time_zone": profile.time_zone or "",
    }


def _profile_page(
    request: Request,
    principal: Principal,
    form: dict[str, Any],
    plan_zone: str,
    *,
    status_code: int = 200,
    errors: list[str] | None = None,
    saved: bool = False,
) -> HTMLResponse:
    return render(
        request,
        "me_profile.html",
        status_code=status_code,
        principal=principal,
        section="profile",
        t=t,
        form=form,
        plan_zone=plan_zone,
        errors=errors or [],
        saved=saved,
    )


@router.get(PROFILE_PAGE, response_class=HTMLResponse)
async def profile_page(
    request: Request,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> Response:
    carrier = Response()
    principal = await page_principal(request, carrier)
    if principal is None:
        return RedirectResponse("/", status_code=303)
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        profile = await service.read_profile(conn, principal)
        plan_zone = await _plan_zone(conn, principal)
    if isinstance(profile, service.Refusal):
        return copy_cookies(
            carrier, message_page(request, principal, 403, t("profile.title"), t("profile.for_patients"))
        )
    saved = request.query_params.get("saved") == "1"
    return copy_cookies(carrier, _profile_page(request, principal, _form_of(profile), plan_zone, saved=saved))


async def _plan_zone(conn: Conn, principal: Principal) -> str:
    if principal.patient_id is None:
        return "UTC"
    return await repository.plan_zone(conn, principal.patient_id) or "UTC"


def _time(raw: str, errors: list[str]) -> time | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        hour, minute = raw.split(":")[:2]
        return time(int(hour), int(minute))
    except ValueError:
        errors.append(t("profile.error.time"))
        return None


def _errors_in_words(exc: ValidationError) -> list[str]:
    words: list[str] = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        text = str(error.get("msg", ""))
        if where == "email":
            words.append(t("profile.error.email"))
        elif where == "time_zone":
            words.append(t("profile.error.time_zone"))
        elif "email needs" in text:
            words.append(t("profile.error.email_needed"))
        elif "must differ" in text:
            words.append(t("profile.error.quiet_same"))
        elif "quiet hours" in text:
            words.append(t("profile.error.quiet_pair"))
        else:
            words.append(t("profile.error.title"))
    return list(dict.fromkeys(words))


@router.post(PROFILE_PAGE, response_class=HTMLResponse)
async def profile_submit(
    request: Request,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> Response:
    carrier = Response()
    principal = await page_principal(request, carrier)
    if principal is None:
        return RedirectResponse("/", status_code=303)
    fields = await form_fields(request)
    if not cookies.csrf_ok(request, fields.get("csrf")):
        return copy_cookies(carrier, message_page(request, principal, 403, t("profile.title"), t("profile.expired")))
    form = {
        "email": fields.get("email", "")[:320],
        "in_app": fields.get("in_app") == "on",
        "by_email": fields.get("by_email") == "on",
        "quiet_start": fields.get("quiet_start", "")[:8],
        "quiet_end": fields.get("quiet_end", "")[:8],
        "time_zone": fields.get("time_zone", "")[:64],
    }
    errors: list[str] = []
    channels = [c for c, on in (("in_app", form["in_app"]), ("email", form["by_email"])) if on]
    quiet_start = _time(str(form["quiet_start"]), errors)
    quiet_end = _time(str(form["quiet_end"]), errors)
    body: ProfileUpdate | None = None
    if not errors:
        try:
            body = ProfileUpdate.model_validate(
                {
                    "email": form["email"] or None,
                    "channels": channels,
                    "quiet_start": quiet_start,
                    "quiet_end": quiet_end,
                    "time_zone": form["time_zone"] or None,
                }
            )
        except ValidationError as exc:
            errors = _errors_in_words(exc)
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        plan_zone = await _plan_zone(conn, principal)
        if body is None:
            page = _profile_page(request, principal, form, plan_zone, status_code=422, errors=errors)
            return copy_cookies(carrier, page)
        outcome = await service.update_profile(conn, principal, body, utc_now())
    if isinstance(outcome, service.Refusal):
        return copy_cookies(
            carrier, message_page(request, principal, 403, t("profile.title"), t("profile.for_patients"))
        )
    return copy_cookies(carrier, RedirectResponse(f"{PROFILE_PAGE}?saved=1", status_code=303))
