"""Rules of the patients API: who is on "my patients" and in what order, what a patient
summary holds and how each figure is computed, and observation rollups.

- My patients: a clinician's care teams' patients (an admin: every patient; other roles 403),
  ordered by the worst unresolved alert, then the number of them, then id, in keyset pages.
  The order needs only the alert figures; the rest (NEWS2, devices, adherence) is computed
  for the page's patients only.
- Summary and rollups: whoever may see the patient (api.access), any other id 404.
- NEWS2 is scored with the detectors' own code from the latest reading of each parameter, with
  the plan's oxygen, SpO2 scale and maximum age, as the worker scores it. A continuous device
  (wearable) is silent past its plan's warn time; a scheduled one when the device-silence
  detector has an unresolved alert for it. Adherence uses the adherence detector's slots
  (core.detectors.rules.adherence.adherence_over).
- Every call writes one audit event (allowed or denied) in the caller's transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec

from api.access.service import may_read_patient
from api.alerts.schemas import AlertRead
from api.audit import repository as audit_repository
from api.audit.schemas import AuditEvent
from api.auth.schemas import Principal
from api.db import Conn
from api.patients import repository
from api.patients.schemas import (
    ADHERENCE_DAYS,
    BUCKETS,
    AdherenceRead,
    CompletenessRead,
    DeviceStatus,
    Direction,
    News2Read,
    PatientList,
    PatientListItem,
    PatientSummary,
    RollupBucket,
    RollupPage,
    RollupQuery,
    ScheduleAdherenceRead,
    VitalLatest,
    WorstAlert,
    encode_cursor,
)
from core.careplan import CarePlan, decode_care_plan, default_care_plan
from core.catalogue import CATALOGUE, acvpu_level
from core.detectors.news2 import PARAMETERS, News2Input, News2Score, score_news2
from core.detectors.rules.adherence import adherence_over, schedules_of
from core.wire import Reading

NEWS2_METRICS: Final = ("resp_rate", "spo2", "bp_systolic", "heart_rate", "consciousness", "body_temp")
VITAL_METRICS: Final = tuple(name for name, m in CATALOGUE.items() if not m.is_event)
MAX_OPEN_ALERTS: Final = 200  # one per (patient, rule): far more than the rules there are
NEWS2_WINDOW: Final = timedelta(hours=24)
VITALS_WINDOW: Final = timedelta(days=7)
DEVICES_WINDOW: Final = timedelta(days=7)
TREND_HOURS: Final = 24
SILENT_RULES: Final = frozenset({"device_silent_warn", "device_silent_urgent"})
# The widest schedule tolerance (core.careplan: at most 12 h): readings before the window may
# satisfy its first slot.
TOLERANCE: Final = timedelta(hours=12)
# A change over 24 h smaller than this share of the metric's plausible range is "steady".
STEADY_SHARE: Final = 0.02


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    detail: str


def plan_of(patient_id: str, stored: Any) -> CarePlan:
    """The stored plan, or the defaults when there is none (or it no longer decodes)."""
    if stored is None:
        return default_care_plan(patient_id)
    try:
        return decode_care_plan(json.dumps(stored))
    except (msgspec.ValidationError, ValueError, TypeError):
        return default_care_plan(patient_id)


def score_latest(plan: CarePlan, latest: dict[str, tuple[float, datetime]]) -> tuple[News2Score, datetime] | None:
    """The score of the latest readings: parameters older than the plan's maximum age at the
    newest reading are not scored (named as missing), as the worker does; None without any."""
    scored = {m: v for m, v in latest.items() if m in NEWS2_METRICS}
    if not scored:
        return None
    newest = max(ts for _, ts in scored.values())
    fresh = {m: v for m, (v, ts) in scored.items() if newest - ts <= timedelta(seconds=plan.news2.max_age_s)}
    level = fresh.get("consciousness")
    obs = News2Input(
        resp_rate=fresh.get("resp_rate"),
        spo2=fresh.get("spo2"),
        on_oxygen=plan.on_oxygen,
        bp_systolic=fresh.get("bp_systolic"),
        heart_rate=fresh.get("heart_rate"),
        consciousness=None if level is None else acvpu_level(level),
        body_temp=fresh.get("body_temp"),
    )
    return score_news2(obs, scale=plan.news2.spo2_scale), newest


def news2_read(plan: CarePlan, latest: dict[str, tuple[float, datetime]], now: datetime) -> News2Read:
    recent = {m: (v, ts) for m, (v, ts) in latest.items() if now - ts <= NEWS2_WINDOW}
    scored = score_latest(plan, recent)
    if scored is None:
        return News2Read(total=None, risk=None, scored_at=None, missing=[p for p in PARAMETERS if p != "air_or_oxygen"])
    score, at = scored
    return News2Read(total=score.total, risk=score.risk.value, scored_at=at, missing=list(score.missing))


def device_statuses(
    plan: CarePlan, devices: list[repository.DeviceSeen], open_alerts: list[dict[str, Any]], now: datetime
) -> list[DeviceStatus]:
    flagged = {
        str(a["evidence"].get("device_id"))
        for a in open_alerts
        if a["rule"] in SILENT_RULES and isinstance(a.get("evidence"), dict) and a["evidence"].get("device_id")
    }
    out = []
    for d in devices:
        policy = plan.silence_policy(d.device_class)
        age = None if d.last_reading_at is None else max(0, int((now - d.last_reading_at).total_seconds()))
        late = age is None or age > policy.warn_s
        out.append(
            DeviceStatus(
                device_id=d.device_id,
                device_class=d.device_class,
                last_reading_at=d.last_reading_at,
                age_s=age,
                silent=d.device_id in flagged or (policy.mode == "continuous" and late),
                battery=d.battery,
                battery_at=d.battery_at,
            )
        )
    return out


def _pct(met: int, expected: int) -> float | None:
    return None if expected == 0 else round(100.0 * met / expected, 1)


def adherence_read(plan: CarePlan, readings: list[Reading], now: datetime) -> AdherenceRead:
    figures = adherence_over(plan, readings, now - timedelta(days=ADHERENCE_DAYS), now)
    measured = [f for f in figures if f.kind == "measurement"]
    doses = [f for f in figures if f.kind == "dose"]
    return AdherenceRead(
        days=ADHERENCE_DAYS,
        measurement_pct=_pct(sum(f.met for f in measured), sum(f.expected for f in measured)),
        medication_pct=_pct(sum(f.met for f in doses), sum(f.expected for f in doses)),
        schedules=[
            ScheduleAdherenceRead(
                schedule=f.key,
                kind="dose" if f.kind == "dose" else "measurement",
                metric=f.metric,
                dose_id=f.dose_id,
                expected=f.expected,
                met=f.met,
                pct=_pct(f.met, f.expected),
            )
            for f in figures
        ],
    )


def least_squares_slope(xs: list[float], ys: list[float]) -> float:
    """Slope of the least-squares line through the points (at least two distinct xs); the
    closed form, a few microseconds for 24 points where numpy.polyfit costs a hundred."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def trend_of(metric: str, buckets: list[RollupBucket], end: datetime) -> tuple[float | None, Direction | None]:
    """Least-squares slope of the hourly means over 24 h, and its direction in words."""
    if len(buckets) < 3:
        return None, None
    hours = [(b.start - end).total_seconds() / 3600 for b in buckets]
    means = [b.mean for b in buckets]
    slope = least_squares_slope(hours, means)
    change = slope * TREND_HOURS
    spec = CATALOGUE[metric]
    steady = STEADY_SHARE * (spec.high - spec.low)
    direction: Direction = "steady" if abs(change) < steady else ("rising" if change > 0 else "falling")
    return round(change, 3), direction


async def _audit(
    conn: Conn, principal: Principal, resource: str, patient_id: str | None, outcome: str, **detail: Any
) -> None:
    await audit_repository.record(
        conn,
        AuditEvent(
            action="read",
            resource=resource,
            outcome="allowed" if outcome == "allowed" else "denied",
            actor_id=principal.user_id,
            actor_role=principal.role,
            patient_id=patient_id,
            detail={"client_ip": principal.client_ip, "session_id": principal.session_id, **detail},
        ),
    )


async def refuse(conn: Conn, principal: Principal, resource: str, patient_id: str | None, refusal: Refusal) -> None:
    """Audit a request refused before its service ran (a bad cursor)."""
    await _audit(conn, principal, resource, patient_id, "denied", reason=refusal.code)


# --- my patients -----------------------------------------------------------------------------
async def my_patients(
    conn: Conn, principal: Principal, now: datetime, limit: int, after: tuple[int, int, str] | None
) -> PatientList | Refusal:
    resource = "patients"
    if principal.role == "clinician":
        names = await repository.team_patients(conn, principal.user_id)
    elif principal.role == "admin":
        names = await repository.all_patients(conn)
    else:
        refusal = Refusal(403, "forbidden", "only clinicians and admins have a list of patients")
        await refuse(conn, principal, resource, None, refusal)
        return refusal
    ids = list(names)
    figures = await repository.alert_figures(conn, ids) if ids else {}

    def key(patient_id: str) -> tuple[int, int, str]:
        f = figures.get(patient_id)
        return (f.rank, f.open_alerts, patient_id) if f else (-1, 0, patient_id)

    def order(k: tuple[int, int, str]) -> tuple[int, int, str]:
        return (-k[0], -k[1], k[2])

    ranked = sorted((key(p) for p in ids), key=order)
    if after is not None:
        ranked = [k for k in ranked if order(k) > order(after)]
    page, more = ranked[:limit], len(ranked) > limit
    page_ids = [k[2] for k in page]
    items: list[PatientListItem] = []
    if page_ids:
        stored = await repository.care_plans(conn, page_ids)
        plans = {p: plan_of(p, stored.get(p)) for p in page_ids}
        latest = await repository.latest_values(conn, page_ids, list(NEWS2_METRICS), now - NEWS2_WINDOW)
        devices = await repository.device_last_readings(conn, page_ids, list(VITAL_METRICS), now - DEVICES_WINDOW)
        flagged = await _silence_alerts(conn, page_ids, figures)
        readings = await _adherence_readings(conn, plans, now)
        for patient_id in page_ids:
            plan = plans[patient_id]
            mine = {m: v for (p, m), v in latest.items() if p == patient_id}
            statuses = device_statuses(
                plan, [d for d in devices if d.patient_id == patient_id], flagged[patient_id], now
            )
            adherence = adherence_read(plan, readings.get(patient_id, []), now)
            expected = sum(s.expected for s in adherence.schedules)
            f = figures.get(patient_id)
            items.append(
                PatientListItem(
                    patient_id=patient_id,
                    display_name=names[patient_id],
                    open_alerts=f.open_alerts if f else 0,
                    worst_alert=WorstAlert.model_validate(f.worst) if f and f.worst else None,
                    news2=news2_read(plan, mine, now),
                    devices=statuses,
                    silent_devices=sum(1 for s in statuses if s.silent),
                    adherence_pct=_pct(sum(s.met for s in adherence.schedules), expected),
                )
            )
    cursor = encode_cursor(*page[-1]) if more and page else None
    await _audit(conn, principal, resource, None, "allowed", returned=len(items), team_patients=len(ids))
    return PatientList(items=items, next_cursor=cursor)


async def _silence_alerts(
    conn: Conn, patient_ids: list[str], figures: dict[str, repository.AlertFigures]
) -> dict[str, list[dict[str, Any]]]:
    """Unresolved device-silence alerts of these patients (rule and evidence)."""
    out: dict[str, list[dict[str, Any]]] = {p: [] for p in patient_ids}
    with_alerts = [p for p in patient_ids if p in figures]
    if with_alerts:
        cur = await conn.execute(
            "SELECT patient_id, rule, evidence FROM alerts "
            "WHERE patient_id = ANY(%s) AND state <> 'resolved' AND rule = ANY(%s)",
            (with_alerts, sorted(SILENT_RULES)),
        )
        for row in await cur.fetchall():
            out[str(row[0])].append({"rule": row[1], "evidence": row[2]})
    return out


async def _adherence_readings(conn: Conn, plans: dict[str, CarePlan], now: datetime) -> dict[str, list[Reading]]:
    pairs = sorted({(p, s.metric) for p, plan in plans.items() for s in schedules_of(plan)})
    start = now - timedelta(days=ADHERENCE_DAYS) - TOLERANCE
    return await repository.scheduled_readings(conn, pairs, start, now + TOLERANCE)


# --- one patient -----------------------------------------------------------------------------
async def summary(
    conn: Conn, principal: Principal, patient_id: str, now: datetime, *, commit: bool = False
) -> PatientSummary | None:
    """The one-screen summary, or None when the caller may not see this patient (audited).

    In pipeline mode: every read (the patient and plan, latest values, hourly trends,
    unresolved alerts, devices with their hours of data, the readings of the plan's schedules)
    is sent, then the access check, whose answer brings them all back in one round trip; when
    access is refused the reads are dropped unread. The audit event follows, and with
    `commit` the caller's transaction is committed in the same round trip as it (the API
    route: two round trips in all, instead of one per statement plus BEGIN and COMMIT)."""
    resource = "patient_summary"
    day_start = now - timedelta(hours=TREND_HOURS)
    metrics = list(VITAL_METRICS)
    async with conn.pipeline():
        # The patient's alerts are read without the inbox's care-team scope: nothing read here
        # leaves this function unless the access check below allows it.
        sent = (
            await repository.send_patient(conn, patient_id),
            await repository.send_latest(conn, patient_id, metrics, now - VITALS_WINDOW),
            await repository.send_trends(conn, patient_id, metrics, day_start, now),
            await repository.send_unresolved_alerts(conn, patient_id, MAX_OPEN_ALERTS),
            await repository.send_devices(conn, patient_id, metrics, now - DEVICES_WINDOW, day_start),
            await repository.send_scheduled(
                conn, patient_id, now - timedelta(days=ADHERENCE_DAYS) - TOLERANCE, now + TOLERANCE
            ),
        )
        if not await may_read_patient(conn, principal, patient_id):
            await _audit(conn, principal, resource, patient_id, "denied", reason="not_visible")
            if commit:
                await conn.commit()
            return None
        name, stored = await repository.patient_of(sent[0])
        mine = await repository.latest_of(sent[1])
        trends = await repository.trends_of(sent[2])
        open_alerts = await repository.alerts_of(sent[3])
        devices, hours = await repository.devices_of(sent[4])
        scheduled = await repository.scheduled_of(sent[5])
        result = _summary(patient_id, name, stored, mine, trends, open_alerts, devices, hours, scheduled, now)
        await _audit(
            conn, principal, resource, patient_id, "allowed", open_alerts=len(open_alerts), vitals=len(result.vitals)
        )
        if commit:
            await conn.commit()
    return result


def _summary(
    patient_id: str,
    name: str,
    stored: Any,
    mine: dict[str, tuple[float, datetime]],
    trends: dict[str, list[RollupBucket]],
    open_alerts: list[AlertRead],
    devices: list[repository.DeviceSeen],
    hours: dict[str, int],
    scheduled: list[Reading],
    now: datetime,
) -> PatientSummary:
    plan = plan_of(patient_id, stored)
    vitals = []
    for metric in VITAL_METRICS:
        if metric not in mine:
            continue
        value, ts = mine[metric]
        buckets = trends.get(metric, [])
        change, direction = trend_of(metric, buckets, now)
        vitals.append(
            VitalLatest(
                metric=metric,
                unit=CATALOGUE[metric].unit,
                value=value,
                ts=ts,
                age_s=max(0, int((now - ts).total_seconds())),
                trend=buckets,
                change_24h=change,
                direction=direction,
            )
        )
    statuses = device_statuses(plan, devices, [{"rule": a.rule, "evidence": a.evidence} for a in open_alerts], now)
    continuous = [s.device_id for s in statuses if plan.silence_policy(s.device_class).mode == "continuous"]
    coverage = {d: round(min(hours.get(d, 0), TREND_HOURS) / TREND_HOURS, 3) for d in continuous}
    return PatientSummary(
        patient_id=patient_id,
        display_name=name,
        generated_at=now,
        vitals=vitals,
        news2=news2_read(plan, mine, now),
        open_alerts=open_alerts,
        adherence=adherence_read(plan, scheduled, now),
        completeness=CompletenessRead(
            hours=TREND_HOURS,
            devices=coverage,
            overall=round(sum(coverage.values()) / len(coverage), 3) if coverage else None,
        ),
        devices=statuses,
    )


async def rollups(conn: Conn, principal: Principal, patient_id: str, query: RollupQuery) -> RollupPage | None:
    """Buckets of one metric, or None when the caller may not see this patient (audited)."""
    resource = "observation_rollups"
    start, end = query.range
    asked = {"metric": query.metric, "bucket": query.bucket, "start": start.isoformat(), "end": end.isoformat()}
    if not await may_read_patient(conn, principal, patient_id):
        await _audit(conn, principal, resource, patient_id, "denied", reason="not_visible", **asked)
        return None
    items = await repository.rollup(conn, patient_id, query.metric, BUCKETS[query.bucket], start, end)
    await _audit(conn, principal, resource, patient_id, "allowed", returned=len(items), **asked)
    return RollupPage(
        patient_id=patient_id,
        metric=query.metric,
        unit=CATALOGUE[query.metric].unit,
        bucket=query.bucket,
        start=start,
        end=end,
        items=items,
    )
