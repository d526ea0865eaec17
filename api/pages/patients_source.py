"""What the my-patients and patient pages show beyond the trends, in words: the patients
service's (api/patients) list and summary, as its JSON routes answer them (access, audit and
every figure are computed there; this module only phrases them for people)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from api.auth.schemas import Principal
from api.db import Conn
from api.pages.words import age_words
from api.patients import service
from api.patients.schemas import AdherenceRead, DeviceStatus, News2Read, PatientList

MAX_LISTED: Final = 200
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


def _devices(devices: list[DeviceStatus], now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "label": f"{CLASS_WORDS.get(d.device_class, d.device_class)} {d.device_id}",
            "last_age": age_words(d.last_reading_at, now) if d.last_reading_at else None,
            "silent": d.silent,
            "battery": None if d.battery is None else round(d.battery * 100),
            "battery_age": age_words(d.battery_at, now) if d.battery_at else None,
        }
        for d in devices
    ]


def _news2(news2: News2Read, now: datetime) -> dict[str, Any]:
    if news2.total is None:
        return {"news2": None, "news2_reason": "no reading of its parameters in the last 24 hours", "news2_missing": []}
    return {
        "news2": news2.total,
        "news2_words": f"{news2.risk} risk",
        "news2_age": age_words(news2.scored_at, now) if news2.scored_at else None,
        "news2_missing": [PARAMETER_WORDS.get(p, p) for p in news2.missing],
    }


def _adherence_words(pct: float | None, what: str) -> str:
    return f"no {what} scheduled in the care plan" if pct is None else f"{pct:g} % over the last 7 days"


def _adherence(adherence: AdherenceRead) -> list[tuple[str, str]]:
    rows = [
        ("Measurements", _adherence_words(adherence.measurement_pct, "measurement")),
        ("Medication", _adherence_words(adherence.medication_pct, "dose")),
    ]
    for s in adherence.schedules:
        name = f"Dose {s.dose_id}" if s.kind == "dose" else f"Measurement {s.metric}"
        rows.append((name, f"{s.met} of {s.expected} on time" if s.expected else "no slot closed yet"))
    return rows


async def my_patients(conn: Conn, principal: Principal, now: datetime) -> list[dict[str, Any]]:
    """The care teams' patients, the most severe open alert first (then the most alerts, then id)."""
    listed = await service.my_patients(conn, principal, now, MAX_LISTED, None)
    if not isinstance(listed, PatientList):
        return []
    return [
        {
            "patient_id": p.patient_id,
            "name": p.display_name,
            "worst": p.worst_alert.severity if p.worst_alert else None,
            "worst_title": p.worst_alert.title if p.worst_alert else None,
            "open_alerts": p.open_alerts,
            **_news2(p.news2, now),
            "devices": _devices(p.devices, now),
            "adherence": p.adherence_pct,
        }
        for p in listed.items
    ]


async def patient_summary(conn: Conn, principal: Principal, patient_id: str, now: datetime) -> dict[str, Any] | None:
    """NEWS2, open alerts, adherence and devices of one patient; None if the caller may not see it."""
    found = await service.summary(conn, principal, patient_id, now)
    if found is None:
        return None
    return {
        "name": found.display_name,
        **_news2(found.news2, now),
        "alerts": [
            {
                "severity": a.severity,
                "title": a.title,
                "state_words": STATE_WORDS.get(a.state, a.state),
                "age": age_words(a.opened_at, now),
            }
            for a in found.open_alerts
        ],
        "devices": _devices(found.devices, now),
        "adherence": _adherence(found.adherence),
        "completeness": None if found.completeness.overall is None else round(found.completeness.overall * 100),
    }
