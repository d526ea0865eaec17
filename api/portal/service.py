"""Rules of the patient's own routes (ADR 0027): My health and My care plan, in plain words.

- Only a signed-in patient has these routes; they always answer the caller's own record
  (there is no patient id to ask for, so no other patient can be reached). Any other role gets
  403 `not_a_patient` (audited as denied): there is nothing to hide by answering 404, since
  the address names no patient.
- My health builds on the patients service's summary (api/patients/service.py `summary`),
  which checks access and writes the one audit event of the read; the care plan and the 7-day
  hourly trend are then read for the same patient in the same transaction without another
  event (one read, one event).
- My care plan reads the plan through the care-plan service (its audit event is the read's
  one event) and computes adherence with the detector's own slots
  (core.detectors.rules.adherence.adherence_over): per local day of the plan's time zone for "days
  kept" and streaks, and per week for the share of planned slots received.
- Limits drawn and named are the plan's enabled limits (api/pages/careplan.py `limits_of`,
  api/pages/summary.py `metric_limits`, as the clinician's patient page draws them) plus the
  blood-pressure crisis and glucose levels, which are care-plan limits too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from api.alerts.schemas import AlertRead
from api.audit import repository as audit_repository
from api.audit.schemas import AuditEvent
from api.auth.schemas import Principal
from api.careplans import service as careplans
from api.db import Conn
from api.pages.careplan import limits_of
from api.pages.summary import metric_limits
from api.patients import repository as patients_repository
from api.patients import service as patients
from api.patients.schemas import DeviceStatus, News2Read, RollupBucket, VitalLatest
from api.portal import learn
from api.portal.schemas import (
    LimitLine,
    MyAlert,
    MyCarePlan,
    MyDevice,
    MyDose,
    MyHealth,
    MyMeasurement,
    MyNews2,
    MyStreak,
    MyVital,
    MyWeek,
    Status,
)
from api.portal.text import catalogue, t
from core.careplan import CarePlan, MeasurementSchedule
from core.detectors.rules.adherence import adherence_over, schedules_of
from core.wire import Reading

WEEK_TREND: Final = timedelta(days=7)
STALE: Final = timedelta(days=1)
LOW_BATTERY: Final = 0.2
WEEKS: Final = 4
GREAT_PCT: Final = 90.0
GOOD_PCT: Final = 60.0
TOLERANCE: Final = patients.TOLERANCE
# Alerts of these rules concern these metrics (limits add their own rule -> metric pairs).
RULE_METRICS: Final[dict[str, tuple[str, ...]]] = {
    "bp_crisis_confirmed": ("bp_systolic", "bp_diastolic"),
    "bp_crisis_unconfirmed": ("bp_systolic", "bp_diastolic"),
    "glucose_low_l1": ("glucose",),
    "glucose_low_l2": ("glucose",),
    "glucose_high": ("glucose",),
    "hf_weight_gain_1d": ("body_weight",),
    "hf_weight_gain_3d": ("body_weight",),
    "hf_weight_gain_7d": ("body_weight",),
}


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    detail: str


NOT_A_PATIENT: Final = Refusal(
    403, "not_a_patient", "these routes show the signed-in patient's own record; only a patient has one"
)
NO_RECORD: Final = Refusal(404, "patient_not_found", "your account is not linked to a patient record")


async def _deny(conn: Conn, principal: Principal, resource: str) -> Refusal:
    await audit_repository.record(
        conn,
        AuditEvent(
            action="read",
            resource=resource,
            outcome="denied",
            actor_id=principal.user_id,
            actor_role=principal.role,
            patient_id=None,
            detail={"client_ip": principal.client_ip, "session_id": principal.session_id, "reason": "not_a_patient"},
        ),
    )
    return NOT_A_PATIENT


# --- words -----------------------------------------------------------------------------------
def age_words(then: datetime, now: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 90:
        return t("age.now")
    if seconds < 90 * 60:
        return t("age.minutes", n=round(seconds / 60))
    if seconds < 48 * 3600:
        return t("age.hours", n=round(seconds / 3600))
    return t("age.days", n=seconds // 86400)


def _num(value: float) -> str:
    return f"{value:g}"


def with_unit(metric: str, value: float) -> str:
    unit = t(f"unit.{metric}")
    if unit == "%":
        return f"{_num(value)}%"
    return f"{_num(value)} {unit}".strip()


def metric_name(metric: str) -> str:
    key = f"metric.{metric}"
    return t(key) if key in catalogue() else metric.replace("_", " ")


def metric_in_sentence(metric: str) -> str:
    """The metric as a noun inside a sentence: "Measure your blood pressure at ..."."""
    key = f"what.{metric}"
    return t(key) if key in catalogue() else metric_name(metric).lower()


# --- limits ----------------------------------------------------------------------------------
def limit_lines(plan: CarePlan, limits: list[dict[str, Any]], metric: str) -> list[LimitLine]:
    """The levels of the plan that tell the care team when this metric crosses them."""
    levels: list[tuple[float, str]] = [
        (float(lim["raise_at"]), str(lim["direction"])) for lim in metric_limits(limits, metric)
    ]
    if plan.bp_crisis.enabled and metric == "bp_systolic":
        levels.append((plan.bp_crisis.systolic, "high"))
    if plan.bp_crisis.enabled and metric == "bp_diastolic":
        levels.append((plan.bp_crisis.diastolic, "high"))
    if plan.glucose.enabled and metric == "glucose":
        levels.append((plan.glucose.level1_below, "low"))
        if plan.glucose.high_above is not None:
            levels.append((plan.glucose.high_above, "high"))
    return [
        LimitLine(value=v, direction="low" if d == "low" else "high", label=t("health.chart.limit", value=_num(v)))
        for v, d in sorted(set(levels))
    ]


def status_of(value: float, lines: Sequence[LimitLine]) -> tuple[Status, LimitLine | None]:
    """Above the lowest high level it crosses, below the highest low level it crosses, or within."""
    if not lines:
        return "no_limit", None
    above = [line for line in lines if line.direction == "high" and value > line.value]
    if above:
        return "above", min(above, key=lambda line: line.value)
    below = [line for line in lines if line.direction == "low" and value < line.value]
    if below:
        return "below", max(below, key=lambda line: line.value)
    return "within", None


def _alert_metrics(alert: AlertRead, rule_metrics: dict[str, tuple[str, ...]]) -> set[str]:
    metrics = set(rule_metrics.get(alert.rule, ()))
    if isinstance(alert.evidence.get("metric"), str):
        metrics.add(alert.evidence["metric"])
    return metrics


def watch_words(plan: CarePlan, metric: str, flagged: set[str]) -> str | None:
    """What the care team watches in a metric without a level: the heart-failure weight gain."""
    if metric != "body_weight" or not plan.hf_weight.enabled:
        return None
    if metric in flagged:
        return t("meaning.weight.told")
    return t("meaning.weight", day=_num(plan.hf_weight.gain_1d_kg), week=_num(plan.hf_weight.gain_7d_kg))


def vital_of(
    v: VitalLatest,
    week: list[RollupBucket],
    lines: list[LimitLine],
    flagged: set[str],
    now: datetime,
    watch: str | None = None,
) -> MyVital:
    """One vital in words; `watch` says what is watched when the metric has no level (weight gain)."""
    status, crossed = status_of(v.value, lines)
    safety = None
    if crossed is not None:
        told = "told" if v.metric in flagged else "watch"
        meaning = t(f"meaning.{status}.{told}", limit=with_unit(v.metric, crossed.value))
        key = f"safety.{v.metric}"
        safety = t(key) if key in catalogue() else None
    elif status == "no_limit" and watch is not None:
        meaning = watch
    else:
        meaning = t("meaning.within") if status == "within" else t("meaning.no_limit")
    if now - v.ts > STALE:
        meaning = f"{meaning} {t('health.stale')}"
    return MyVital(
        metric=v.metric,
        name=metric_name(v.metric),
        unit=t(f"unit.{v.metric}") if f"unit.{v.metric}" in catalogue() else v.unit,
        value=v.value,
        ts=v.ts,
        age_s=v.age_s,
        age_words=age_words(v.ts, now),
        status=status,
        meaning=meaning,
        safety=safety,
        trend_words=None if v.direction is None else t(f"trend.{v.direction}"),
        direction=v.direction,
        limits=lines,
        trend_24h=v.trend,
        trend_7d=week,
    )


def news2_of(news2: News2Read) -> MyNews2:
    if news2.total is None or news2.risk is None:
        words = t("news2.none")
    else:
        words = t(f"news2.{news2.risk}", total=news2.total)
    return MyNews2(
        total=news2.total,
        risk=news2.risk,
        words=words,
        about=t("news2.about"),
        missing=bool(news2.missing) and news2.total is not None,
    )


def alert_of(alert: AlertRead, now: datetime) -> MyAlert:
    key = f"alert.{alert.rule}"
    state = f"alert.state.{alert.state}"
    return MyAlert(
        id=alert.id,
        what=t(key) if key in catalogue() else t("alert.other"),
        status=t(state) if state in catalogue() else t("alert.state.open"),
        opened_at=alert.opened_at,
        since_words=t("alert.since", age=age_words(alert.opened_at, now)),
    )


def device_of(d: DeviceStatus, now: datetime) -> MyDevice:
    kind = f"device.{d.device_class}"
    pct = None if d.battery is None else round(d.battery * 100)
    low = d.battery is not None and d.battery < LOW_BATTERY
    if pct is None:
        battery = t("device.battery_unknown")
    else:
        battery = t("device.battery_low" if low else "device.battery", pct=pct)
    advice = t("device.silent_help") if d.silent else None
    return MyDevice(
        device_id=d.device_id,
        kind=t(kind) if kind in catalogue() else d.device_class,
        last_reading_at=d.last_reading_at,
        seen_words=t("device.seen", age=age_words(d.last_reading_at, now)) if d.last_reading_at else t("device.never"),
        battery_pct=pct,
        battery_words=battery,
        battery_low=low,
        silent=d.silent,
        advice=advice,
    )


# --- My health -------------------------------------------------------------------------------
async def my_health(conn: Conn, principal: Principal, now: datetime) -> MyHealth | Refusal:
    """The caller's own readings, score, alerts and devices in plain words (one audit event)."""
    if principal.role != "patient":
        return await _deny(conn, principal, "me/health")
    patient_id = principal.patient_id
    found = None if patient_id is None else await patients.summary(conn, principal, patient_id, now)
    if found is None or patient_id is None:
        return NO_RECORD
    stored = (await patients_repository.care_plans(conn, [patient_id])).get(patient_id)
    plan = patients.plan_of(patient_id, stored)
    limits = limits_of(stored if isinstance(stored, dict) else {})
    metrics = [v.metric for v in found.vitals]
    week = await patients_repository.hourly_trends(conn, patient_id, metrics, now - WEEK_TREND, now)
    rule_metrics = {**RULE_METRICS, **{str(lim["rule"]): (str(lim["metric"]),) for lim in limits}}
    flagged = {m for a in found.open_alerts for m in _alert_metrics(a, rule_metrics)}
    return MyHealth(
        patient_id=patient_id,
        generated_at=now,
        vitals=[
            vital_of(
                v,
                week.get(v.metric, []),
                limit_lines(plan, limits, v.metric),
                flagged,
                now,
                watch_words(plan, v.metric, flagged),
            )
            for v in found.vitals
        ],
        news2=news2_of(found.news2),
        alerts=[alert_of(a, now) for a in found.open_alerts],
        devices=[device_of(d, now) for d in found.devices],
        silent_help=t("device.silent_help"),
    )


# --- My care plan ----------------------------------------------------------------------------
def _times(times: Sequence[time]) -> list[str]:
    return [x.strftime("%H:%M") for x in sorted(times)]


def _joined(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _measure_words(m: MeasurementSchedule) -> str:
    what = metric_in_sentence(m.metric)
    if m.times_of_day:
        return t("plan.measure.times", what=what, times=_joined(_times(m.times_of_day)))
    if m.times_per_day == 1:
        return t("plan.measure.once", what=what)
    return t("plan.measure.per_day", what=what, count=m.times_per_day)


def limit_sentences(plan: CarePlan, limits: list[dict[str, Any]]) -> list[str]:
    out = []
    for lim in limits:
        if not lim.get("enabled", True):
            continue
        metric = str(lim["metric"])
        key = "plan.limit.low" if lim["direction"] == "low" else "plan.limit.high"
        rule = t(key, what=metric_in_sentence(metric), limit=with_unit(metric, float(lim["raise_at"])))
        minutes = int(lim.get("sustained_s", 0)) // 60
        out.append(t("plan.limit.for", rule=rule, minutes=minutes) if minutes >= 1 else rule)
    if plan.bp_crisis.enabled:
        out.append(t("plan.bp", systolic=_num(plan.bp_crisis.systolic), diastolic=_num(plan.bp_crisis.diastolic)))
    if plan.glucose.enabled:
        low = with_unit("glucose", plan.glucose.level1_below)
        if plan.glucose.high_above is None:
            out.append(t("plan.glucose_low_only", low=low))
        else:
            out.append(t("plan.glucose", low=low, high=with_unit("glucose", plan.glucose.high_above)))
    if plan.hf_weight.enabled:
        out.append(t("plan.weight", day=_num(plan.hf_weight.gain_1d_kg), week=_num(plan.hf_weight.gain_7d_kg)))
    return out


def _day_bounds(day: date, plan: CarePlan, now: datetime) -> tuple[datetime, datetime]:
    zone = plan.zone
    start = datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)
    return start, min(end, now)


def _pct(met: int, expected: int) -> float | None:
    return None if expected == 0 else round(100.0 * met / expected, 1)


def _cheer(pct: float | None) -> str:
    if pct is None:
        return t("plan.week.nothing")
    if pct >= GREAT_PCT:
        return t("plan.week.great")
    if pct >= GOOD_PCT:
        return t("plan.week.good")
    return t("plan.week.start")


def adherence_weeks(plan: CarePlan, readings: Sequence[Reading], now: datetime) -> tuple[list[MyWeek], MyStreak]:
    """The last 4 weeks (local days of the plan's zone, today last) and the streaks of fully kept days.

    A day is kept when it had at least one planned slot close and every closed slot was kept;
    a day with nothing planned neither breaks nor extends a run. Today joins the current run
    once it is kept so far, and a slot already missed today ends it.
    """
    today = now.astimezone(plan.zone).date()
    days = [today - timedelta(days=n) for n in range(WEEKS * 7 - 1, -1, -1)]
    kept: list[bool | None] = []  # None: nothing planned that day
    for day in days:
        start, end = _day_bounds(day, plan, now)
        figures = adherence_over(plan, readings, start, end)
        expected = sum(f.expected for f in figures)
        kept.append(None if expected == 0 else sum(f.met for f in figures) == expected)
    weeks = []
    for w in range(WEEKS):
        chunk = days[w * 7 : w * 7 + 7]
        flags = kept[w * 7 : w * 7 + 7]
        start, _ = _day_bounds(chunk[0], plan, now)
        _, end = _day_bounds(chunk[-1], plan, now)
        figures = adherence_over(plan, readings, start, end)
        expected, met = sum(f.expected for f in figures), sum(f.met for f in figures)
        with_plan = sum(1 for k in flags if k is not None)
        days_kept = sum(1 for k in flags if k)
        received = _pct(met, expected)
        words = [t("plan.week.label", date=chunk[0].strftime("%d %B").lstrip("0"))]
        if expected:
            words += [
                t("plan.week.days", kept=days_kept, days=with_plan),
                t("plan.week.share", met=met, expected=expected),
            ]
        words.append(_cheer(received))
        weeks.append(
            MyWeek(
                start=chunk[0],
                end=chunk[-1],
                days_with_plan=with_plan,
                days_kept=days_kept,
                days_covered_pct=_pct(days_kept, with_plan),
                expected=expected,
                met=met,
                received_pct=received,
                words=words,
            )
        )
    return weeks, streak_of(kept)


def streak_of(kept: Sequence[bool | None]) -> MyStreak:
    """Runs of kept days, oldest first in `kept`, the last entry being today."""
    best = run = 0
    for k in kept[:-1]:
        if k is None:
            continue
        run = run + 1 if k else 0
        best = max(best, run)
    today = kept[-1] if kept else None
    current = 0 if today is False else run + (1 if today else 0)
    best = max(best, current)
    if current >= 2:
        words = [t("plan.streak.now", days=current)]
    elif current == 1:
        words = [t("plan.streak.one")]
    else:
        words = [t("plan.streak.zero")]
    if best > current and best >= 2:
        words.append(t("plan.streak.best", days=best))
    return MyStreak(current=current, best=best, words=words)


async def my_care_plan(conn: Conn, principal: Principal, now: datetime) -> MyCarePlan | Refusal:
    """The caller's own plan in plain words, adherence per week and streaks (one audit event)."""
    if principal.role != "patient":
        return await _deny(conn, principal, "me/care_plan")
    patient_id = principal.patient_id
    if patient_id is None:
        return NO_RECORD
    read = await careplans.read_plan(conn, principal, patient_id)
    if isinstance(read, careplans.Refusal):
        return NO_RECORD
    plan = patients.plan_of(patient_id, read.plan)
    limits = limits_of(read.plan)
    pairs = sorted({(patient_id, s.metric) for s in schedules_of(plan)})
    start = now - timedelta(days=WEEKS * 7 + 1) - TOLERANCE
    readings = (await patients_repository.scheduled_readings(conn, pairs, start, now)).get(patient_id, [])
    weeks, streak = adherence_weeks(plan, readings, now)
    intro = t("plan.intro", zone=plan.timezone)
    if read.version == 0:
        intro = f"{t('plan.default')} {intro}"
    if plan.on_oxygen:
        intro = f"{intro} {t('plan.oxygen')}"
    return MyCarePlan(
        patient_id=patient_id,
        version=read.version,
        timezone=plan.timezone,
        updated_at=read.updated_at,
        intro=intro,
        measurements=[
            MyMeasurement(
                metric=m.metric,
                name=metric_name(m.metric),
                times=_times(m.times_of_day),
                per_day=m.times_per_day,
                words=_measure_words(m),
            )
            for m in plan.measurements
        ],
        doses=[
            MyDose(
                dose_id=d.dose_id,
                times=_times(d.times_of_day),
                words=t("plan.dose.times", dose=d.dose_id, times=_joined(_times(d.times_of_day))),
            )
            for d in plan.medications
        ],
        limits=limit_sentences(plan, limits),
        note=plan.note,
        weeks=weeks,
        streak=streak,
        conditions=learn.conditions_of(plan),
    )
