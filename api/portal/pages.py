"""The patient's pages (ADR 0027): `/me` My health, `/me/care-plan` My care plan, and the lessons
`/me/learn` and `/me/learn/<condition>` (a plain form, answers checked here).

Each page calls the portal service as its JSON route does (access and the one audit event are
the service's) and draws the trend charts with the clinician pages' SVG charts
(api/pages/charts.py). A page that needs a session and has none redirects to `/`; a signed-in
user who is not a patient gets a 403 page in words. The lessons read no health data.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.auth.schemas import Principal
from api.consents import repository as consents_repository
from api.consents.service import consents_of
from api.db import Pool
from api.dependencies import get_pool, get_settings, utc_now
from api.pages import cookies
from api.pages.charts import trend_chart
from api.pages.session import copy_cookies, form_fields, page_principal, render
from api.patients.schemas import RollupBucket
from api.portal import learn, service
from api.portal.schemas import MyVital
from api.portal.text import t
from api.reminders import repository as reminders_repository
from api.settings import ApiSettings

router = APIRouter(include_in_schema=False)

RANGES: Final = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
Slug = Annotated[str, Path(min_length=1, max_length=40)]


def _samples(buckets: list[RollupBucket]) -> list[tuple[datetime, float]]:
    # Each hourly mean drawn at the middle of its hour.
    return [(b.start + timedelta(minutes=30), b.mean) for b in buckets]


def _panel(v: MyVital, span: str, now: datetime) -> dict[str, Any]:
    buckets = v.trend_24h if span == "24h" else v.trend_7d
    start = now - RANGES[span]
    levels = [(line.label, line.value, "raise") for line in v.limits]
    values = ", ".join(service.with_unit(v.metric, line.value) for line in v.limits)
    limits = t("health.chart.aria_limits", values=values) if v.limits else t("health.chart.aria_no_limits")
    return {
        "v": v,
        "value": service.with_unit(v.metric, v.value),
        "chart": trend_chart(_samples(buckets), start, now, levels),
        "few": len(buckets) == 1 and span == "24h",
        "aria": t("health.chart.aria", name=v.name, span=t(f"health.range.{span}"), count=len(buckets), limits=limits),
    }


async def _patient(request: Request, carrier: Response) -> Principal | Response:
    principal = await page_principal(request, carrier)
    if principal is None:
        return RedirectResponse("/", status_code=303)
    if principal.role != "patient":
        page = render(
            request,
            "message.html",
            status_code=403,
            principal=principal,
            title="These pages are for patients",
            message="You are signed in as a member of staff. Patients see their own record here.",
        )
        return copy_cookies(carrier, page)
    return principal


def _no_record(request: Request, principal: Principal) -> HTMLResponse:
    return render(
        request,
        "message.html",
        status_code=404,
        principal=principal,
        title=t("page.no_record.title"),
        message=t("page.no_record"),
    )


@router.get("/me", response_class=HTMLResponse)
async def my_health_page(
    request: Request,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> Response:
    carrier = Response()
    principal = await _patient(request, carrier)
    if isinstance(principal, Response):
        return principal
    span = request.query_params.get("range", "24h")
    span = span if span in RANGES else "24h"
    now = utc_now()
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        health = await service.my_health(conn, principal, now)
        shares = True
        if not isinstance(health, service.Refusal):
            # The intro says whether the care team sees these readings (ADR 0024).
            tiers = consents_of(health.patient_id, await consents_repository.grants(conn, health.patient_id)).tiers
            shares = all(tier.state != "withdrawn" for tier in tiers if tier.tier == "share_care_team")
    if isinstance(health, service.Refusal):
        return copy_cookies(carrier, _no_record(request, principal))
    page = render(
        request,
        "me_health.html",
        principal=principal,
        section="me",
        t=t,
        shares=shares,
        health=health,
        span=span,
        spans=list(RANGES),
        panels=[_panel(v, span, now) for v in health.vitals],
    )
    return copy_cookies(carrier, page)


def changed_words(version: int, updated_at: datetime | None, zone_name: str | None) -> str | None:
    """'Plan version 3, last changed 4 May 2026 at 09:30, Europe/Oslo time.': in the patient's
    zone, always named (so "UTC time" when that is the zone, or the name is unknown). None for
    the default plan, which was never changed."""
    if updated_at is None:
        return None
    try:
        zone = ZoneInfo(zone_name) if zone_name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = updated_at.astimezone(zone)
    return t(
        "plan.version",
        version=version,
        date=local.strftime("%d %B %Y").lstrip("0"),
        time=local.strftime("%H:%M"),
        zone=zone.key,
    )


@router.get("/me/care-plan", response_class=HTMLResponse)
async def my_care_plan_page(
    request: Request,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> Response:
    carrier = Response()
    principal = await _patient(request, carrier)
    if isinstance(principal, Response):
        return principal
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        plan = await service.my_care_plan(conn, principal, utc_now())
        # The zone only (not an audited read): the one the patient chose on their profile.
        prefs = (
            None if principal.patient_id is None else await reminders_repository.preferences(conn, principal.patient_id)
        )
    if isinstance(plan, service.Refusal):
        return copy_cookies(carrier, _no_record(request, principal))
    lessons = [(learn.slug(c), t(f"learn.{c}.title"), c in plan.conditions) for c in learn.CONDITIONS]
    page = render(
        request,
        "me_care_plan.html",
        principal=principal,
        section="care-plan",
        t=t,
        plan=plan,
        # The profile's zone; none chosen means the plan's (as for reminders, ADR 0026).
        changed=changed_words(plan.version, plan.updated_at, (prefs.time_zone if prefs else None) or plan.timezone),
        lessons=sorted(lessons, key=lambda lesson: not lesson[2]),
        planned=any(w.expected for w in plan.weeks),
    )
    return copy_cookies(carrier, page)


@router.get("/me/learn", response_class=HTMLResponse)
async def lessons_page(request: Request) -> Response:
    carrier = Response()
    principal = await _patient(request, carrier)
    if isinstance(principal, Response):
        return principal
    lessons = [(learn.slug(c), t(f"learn.{c}.title"), False) for c in learn.CONDITIONS]
    page = render(request, "me_learn_index.html", principal=principal, section="care-plan", t=t, lessons=lessons)
    return copy_cookies(carrier, page)


def _lesson_page(
    request: Request, principal: Principal, condition: str, marked: learn.Marked | None = None, status_code: int = 200
) -> HTMLResponse:
    chosen = {f.number: f.chosen for f in marked.feedback} if marked else {}
    feedback = {f.number: f for f in marked.feedback} if marked else {}
    return render(
        request,
        "me_learn.html",
        status_code=status_code,
        principal=principal,
        section="care-plan",
        t=t,
        lesson=learn.lesson(condition),
        marked=marked,
        chosen=chosen,
        feedback=feedback,
    )


def _lesson_not_found(request: Request, principal: Principal) -> HTMLResponse:
    return render(
        request,
        "message.html",
        status_code=404,
        principal=principal,
        title=t("page.no_lesson.title"),
        message=t("page.no_lesson"),
    )


@router.get("/me/learn/{slug}", response_class=HTMLResponse)
async def lesson_page(request: Request, slug: Slug) -> Response:
    carrier = Response()
    principal = await _patient(request, carrier)
    if isinstance(principal, Response):
        return principal
    condition = learn.condition_of_slug(slug)
    if condition is None:
        return copy_cookies(carrier, _lesson_not_found(request, principal))
    return copy_cookies(carrier, _lesson_page(request, principal, condition))


@router.post("/me/learn/{slug}", response_class=HTMLResponse)
async def lesson_answers(request: Request, slug: Slug) -> Response:
    carrier = Response()
    principal = await _patient(request, carrier)
    if isinstance(principal, Response):
        return principal
    condition = learn.condition_of_slug(slug)
    if condition is None:
        return copy_cookies(carrier, _lesson_not_found(request, principal))
    form = await form_fields(request)
    if not cookies.csrf_ok(request, form.get("csrf")):
        page = render(
            request,
            "message.html",
            status_code=403,
            principal=principal,
            title=t("page.expired.title"),
            message=t("page.expired"),
        )
        return copy_cookies(carrier, page)
    marked = learn.check_answers(condition, form)
    return copy_cookies(carrier, _lesson_page(request, principal, condition, marked))
