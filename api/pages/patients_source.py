"""What the my-patients and patient pages show beyond the trends: the latest NEWS2 with the
parameters it could not score, open alerts, each device's last reading with its age and
whether it is silent, and adherence.

The patients service (api/patients) was not in the tree when this was written, so the pages
compose it here from what the API's role may read: open alerts through the alerts service
(audited there), readings, devices and care plans through api/pages/repository.py (one audit
event per page view). NEWS2 is scored with the detectors' own code (core.detectors.news2)
from the latest reading of each parameter, with the plan's oxygen, SpO2 scale and maximum
age, as the worker scores it. A continuous device (wearable) is silent past its plan's warn
time; a scheduled one when the device-silence detector has an open alert for it.
Adherence is not computed here (it needs the schedule windows of the detectors).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec

from api.alerts import service as alerts
from api.alerts.schemas import UNRESOLVED, AlertRead, InboxQuery
from api.audit import repository as audit_repository
from api.audit.schemas import AuditEvent
from api.auth.schemas import Principal
from api.db import Conn
from api.pages import repository
from api.pages.words import age_words
from core.careplan import CarePlan, decode_care_plan, default_care_plan
from core.catalogue import CATALOGUE, acvpu_level
from core.detectors.news2 import PARAMETERS, News2Input, News2Score, score_news2

NEWS2_METRICS: Final = ("resp_rate", "spo2", "bp_systolic", "heart_rate", "consciousness", "body_temp")
READINGS_WINDOW: Final = timedelta(hours=24)
DEVICES_WINDOW: Final = timedelta(days=7)
SILENT_RULES: Final = frozenset({"device_silent_warn", "device_silent_urgent"})
SEVERITY_RANK: Final = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
PARAMETER_WORDS: Final = {
    "resp_rate": "respiration rate",
    "spo2": "SpO2",
    "air_or_oxygen": "air or oxygen",
    "bp_systolic": "systolic blood pressure",
    "heart_rate": "heart rate",
    "consciousness": "consciousness (ACVPU)",
    "body_temp": "temperature",
}
STATE_WORDS: Final = {"open": "open", "acknowledged": "acknowledged", "snoozed": "snoozed"}
CLASS_WORDS: Final = {
    "wearable": "Wearable",
    "bp_cuff": "Blood pressure cuff",
    "pulse_oximeter": "Pulse oximeter",
    "scale": "Scale",
    "glucometer": "Glucometer",
    "pill_bottle": "Pill bottle",
    "thermometer": "Thermometer",
}


def plan_of(patient_id: str, stored: Any) -> CarePlan:
    if stored is None:
        return default_care_plan(patient_id)
    try:
        return decode_care_plan(json.dumps(stored))
    except (msgspec.ValidationError, ValueError, TypeError):
        return default_care_plan(patient_id)


def news2_of(plan: CarePlan, latest: dict[str, tuple[float, datetime]]) -> tuple[News2Score, datetime] | None:
    """The score of the latest readings: parameters older than the plan's maximum age at the
    newest reading are not scored (named as missing), as the worker does; None without any."""
    if not latest:
        return None
    newest = max(ts for _, ts in latest.values())
    fresh = {m: v for m, (v, ts) in latest.items() if newest - ts <= timedelta(seconds=plan.news2.max_age_s)}
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


@dataclass
class Snapshot:
    plans: dict[str, CarePlan] = field(default_factory=dict)
    alerts: dict[str, list[AlertRead]] = field(default_factory=lambda: defaultdict(list))
    latest: dict[str, dict[str, tuple[float, datetime]]] = field(default_factory=lambda: defaultdict(dict))
    devices: dict[str, list[repository.DeviceSeen]] = field(default_factory=lambda: defaultdict(list))


async def _snapshot(conn: Conn, principal: Principal, patient_ids: list[str], now: datetime, one: bool) -> Snapshot:
    snap = Snapshot()
    stored = await repository.care_plans(conn, patient_ids)
    snap.plans = {p: plan_of(p, stored.get(p)) for p in patient_ids}
    query = InboxQuery(states=UNRESOLVED, patient_id=patient_ids[0] if one else None, limit=200)
    page = await alerts.list_alerts(conn, principal, query)
    if not isinstance(page, alerts.Refusal):
        for a in page.items:
            snap.alerts[a.patient_id].append(a)
    values = await repository.latest_values(conn, patient_ids, NEWS2_METRICS, now - READINGS_WINDOW)
    for (patient_id, metric), value in values.items():
        snap.latest[patient_id][metric] = value
    for device in await repository.device_last_readings(conn, patient_ids, list(CATALOGUE), now - DEVICES_WINDOW):
        snap.devices[device.patient_id].append(device)
    return snap


def _devices(snap: Snapshot, patient_id: str, now: datetime) -> list[dict[str, Any]]:
    flagged = {
        str(a.evidence.get("device_id"))
        for a in snap.alerts.get(patient_id, [])
        if a.rule in SILENT_RULES and a.evidence.get("device_id")
    }
    plan = snap.plans[patient_id]
    rows = []
    for d in snap.devices.get(patient_id, []):
        policy = plan.silence_policy(d.device_class)
        late = d.last_reading_at is None or (now - d.last_reading_at).total_seconds() > policy.warn_s
        silent = d.device_id in flagged or (policy.mode == "continuous" and late)
        rows.append(
            {
                "label": f"{CLASS_WORDS.get(d.device_class, d.device_class)} {d.device_id}",
                "last_age": age_words(d.last_reading_at, now) if d.last_reading_at else None,
                "silent": silent,
                "battery": None,  # not reported: no battery level is stored yet
            }
        )
    return rows


def _news2_view(snap: Snapshot, patient_id: str, now: datetime) -> dict[str, Any]:
    scored = news2_of(snap.plans[patient_id], snap.latest.get(patient_id, {}))
    if scored is None:
        return {"news2": None, "news2_reason": "no reading of its parameters in the last 24 hours", "news2_missing": []}
    score, at = scored
    return {
        "news2": score.total,
        "news2_words": f"{score.risk.value} risk",
        "news2_age": age_words(at, now),
        "news2_missing": [PARAMETER_WORDS.get(p, p) for p in PARAMETERS if p in score.missing],
    }


async def _audit(conn: Conn, principal: Principal, resource: str, patient_id: str | None, **detail: Any) -> None:
    # Readings and devices of one's patients are health data: each page view is audited.
    await audit_repository.record(
        conn,
        AuditEvent(
            action="read",
            resource=resource,
            outcome="allowed",
            actor_id=principal.user_id,
            actor_role=principal.role,
            patient_id=patient_id,
            detail=detail,
        ),
    )


async def my_patients(conn: Conn, principal: Principal, now: datetime) -> list[dict[str, Any]]:
    """The care teams' patients, the most severe open alert first (then the most alerts, then id)."""
    ids = await repository.team_patients(conn, principal.user_id)
    if not ids:
        await _audit(conn, principal, "pages/patients", None, returned=0)
        return []
    snap = await _snapshot(conn, principal, ids, now, one=False)
    rows = []
    for patient_id in ids:
        open_alerts = snap.alerts.get(patient_id, [])
        worst = open_alerts[0] if open_alerts else None  # the service sorts most severe first
        rows.append(
            {
                "patient_id": patient_id,
                "name": None,
                "worst": worst.severity if worst else None,
                "worst_title": worst.title if worst else None,
                "open_alerts": len(open_alerts),
                **_news2_view(snap, patient_id, now),
                "devices": _devices(snap, patient_id, now),
                "adherence": None,
            }
        )
    rows.sort(key=lambda r: (-SEVERITY_RANK.get(r["worst"] or "", -1), -r["open_alerts"], r["patient_id"]))
    await _audit(conn, principal, "pages/patients", None, returned=len(rows))
    return rows


async def patient_summary(conn: Conn, principal: Principal, patient_id: str, now: datetime) -> dict[str, Any]:
    """NEWS2, open alerts and devices of one patient (the caller has checked access)."""
    snap = await _snapshot(conn, principal, [patient_id], now, one=True)
    open_alerts = [
        {
            "severity": a.severity,
            "title": a.title,
            "state_words": STATE_WORDS.get(a.state, a.state),
            "age": age_words(a.opened_at, now),
        }
        for a in snap.alerts.get(patient_id, [])
    ]
    await _audit(conn, principal, "pages/patient-summary", patient_id)
    return {
        **_news2_view(snap, patient_id, now),
        "alerts": open_alerts,
        "devices": _devices(snap, patient_id, now),
        "adherence": [
            ("Measurements", "not computed on this page yet"),
            ("Medication", "not computed on this page yet"),
        ],
    }
