"""The patient page: NEWS2 with the parameters it could not score, open alerts (linked to the
inbox), adherence and devices (api/pages/patients_source.py), then 24 h trend charts of the
main vitals with the care plan's limits drawn as lines, and the latest value of each with its
age."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.careplans import service as careplans
from api.db import Pool
from api.dependencies import get_pool, get_settings, utc_now
from api.observations import service as observations
from api.observations.schemas import MAX_LIMIT, ObservationQuery
from api.pages import patients_source
from api.pages.careplan import limits_of
from api.pages.charts import trend_chart
from api.pages.session import copy_cookies, page_principal, render
from api.pages.words import age_words
from api.settings import ApiSettings

router = APIRouter(include_in_schema=False)

PatientId = Annotated[str, Path(min_length=1, max_length=64)]
UNIT_WORDS = {"Cel": "°C", "mm[Hg]": "mmHg"}  # UCUM codes as people write them
CHART_METRICS = (
    ("spo2", "Oxygen saturation (SpO2)"),
    ("heart_rate", "Heart rate"),
    ("resp_rate", "Respiration rate"),
    ("body_temp", "Temperature"),
    ("bp_systolic", "Systolic blood pressure"),
)


def metric_limits(limits: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """The enabled limits of one metric among a plan's limits (`limits_of`); the patient's own
    pages (api/portal) draw the same ones."""
    return [lim for lim in limits if lim.get("metric") == metric and lim.get("enabled", True)]


@router.get("/patients/{patient_id}", response_class=HTMLResponse)
async def patient_page(
    request: Request,
    patient_id: PatientId,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> Response:
    carrier = Response()
    principal = await page_principal(request, carrier)
    if principal is None:
        return RedirectResponse("/", status_code=303)
    now = utc_now()
    panels: list[dict[str, Any]] = []
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        plan = await careplans.read_plan(conn, principal, patient_id)
        if isinstance(plan, careplans.Refusal):
            page = render(
                request,
                "message.html",
                status_code=404,
                principal=principal,
                title="Patient not found",
                message="There is no patient with this id among your patients.",
            )
            return copy_cookies(carrier, page)
        limits = limits_of(plan.plan)
        summary = await patients_source.patient_summary(conn, principal, patient_id, now)
        for metric, title in CHART_METRICS:
            query = ObservationQuery.model_validate({"metric": metric, "limit": MAX_LIMIT})
            page_of = await observations.read_observations(conn, principal, patient_id, query)
            if page_of is None:
                continue
            samples = [(item.ts, item.value) for item in page_of.items]
            levels = [
                (
                    (f"alert {'below' if lim['direction'] == 'low' else 'above'} " if kind == "raise" else "clear at ")
                    + f"{lim[kind + '_at']:g}",
                    float(lim[kind + "_at"]),
                    kind,
                )
                for lim in metric_limits(limits, metric)
                for kind in ("raise", "clear")
            ]
            latest = samples[-1] if samples else None
            panels.append(
                {
                    "metric": metric,
                    "title": title,
                    "unit": UNIT_WORDS.get(page_of.unit, page_of.unit),
                    "count": len(samples),
                    "chart": trend_chart(samples, page_of.start, page_of.end, levels),
                    "latest": latest[1] if latest else None,
                    "age": age_words(latest[0], now) if latest else None,
                    "levels": levels,
                }
            )
    page = render(
        request,
        "patient.html",
        principal=principal,
        patient_id=patient_id,
        panels=panels,
        plan_version=plan.version,
        summary=summary,
    )
    return copy_cookies(carrier, page)
