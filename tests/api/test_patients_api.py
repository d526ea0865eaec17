"""The patients API (api/patients) over the real database: my patients in order of urgency with
NEWS2, devices and adherence, in keyset pages; the one-screen patient summary; observation
rollups with time_bucket; scope (404 outside the caller's reach, 403 for roles without a list)
and exactly one audit event per request, denied ones included."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from core.careplan import CarePlan, MeasurementSchedule, MedicationSchedule, encode_care_plan
from tests.api.conftest import TestUser
from tests.api.support import assert_problem, raise_alert

pytestmark = pytest.mark.anyio

Points = list[tuple[datetime, float]]


def bind_device(db: psycopg.Connection, patient_id: str, device_class: str = "wearable") -> str:
    device_id = f"dev-{uuid.uuid4().hex[:10]}"
    db.execute("INSERT INTO devices (id, device_class) VALUES (%s, %s)", (device_id, device_class))
    db.execute(
        "INSERT INTO device_bindings (device_id, patient_id, valid_from) VALUES (%s, %s, %s)",
        (device_id, patient_id, datetime.now(UTC) - timedelta(days=30)),
    )
    return device_id


def store_plan(db: psycopg.Connection, plan: CarePlan) -> None:
    db.execute(
        "INSERT INTO care_plans (patient_id, version, plan) VALUES (%s, 1, %s::jsonb)",
        (plan.patient_id, encode_care_plan(plan).decode()),
    )


def audit_events(db: psycopg.Connection, user: TestUser, resource: str) -> list[tuple[str, str | None]]:
    rows = db.execute(
        "SELECT outcome, patient_id FROM audit_events WHERE actor_id = %s AND resource = %s ORDER BY id",
        (user.id, resource),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


@pytest.fixture
def team(
    make_patient: Callable[[], str],
    make_user: Callable[..., TestUser],
    make_care_team: Callable[..., uuid.UUID],
) -> dict[str, Any]:
    patients = [make_patient() for _ in range(3)]
    clinician = make_user("clinician")
    make_care_team([clinician], patients)
    other_patient = make_patient()
    outsider = make_user("clinician")
    make_care_team([outsider], [other_patient])
    return {"patients": patients, "clinician": clinician, "outsider": outsider, "other_patient": other_patient}


def daily_slots(now: datetime, at: time, tolerance: timedelta, days: int = 7) -> list[datetime]:
    """Scheduled UTC times whose whole window [t - tol, t + tol] lies in [now - days, now)."""
    start = now - timedelta(days=days)
    out = []
    day = start.date() - timedelta(days=1)
    while day <= now.date():
        t = datetime.combine(day, at, tzinfo=UTC)
        if t - tolerance >= start and t + tolerance <= now:
            out.append(t)
        day += timedelta(days=1)
    return out


async def test_my_patients_most_urgent_first_with_news2_devices_and_adherence(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    team: dict[str, Any],
    auth_headers: Callable[[TestUser], dict[str, str]],
    add_observations: Callable[..., None],
) -> None:
    p1, p2, p3 = team["patients"]
    now = datetime.now(UTC)
    critical = raise_alert(db, p1, rule="news2_high", severity="critical", age=timedelta(minutes=3))
    raise_alert(db, p1, rule="spo2_low", severity="high")
    raise_alert(db, p2, rule="weight_gain", severity="medium", age=timedelta(hours=3))
    raise_alert(db, p2, rule="bp_high", severity="medium", age=timedelta(hours=1))
    raise_alert(db, team["other_patient"], severity="critical")  # another team's: never listed
    # p1: a wearable that last sent 40 min ago (past the 15 min warn time: silent), NEWS2 inputs.
    wearable = bind_device(db, p1)
    seen = now - timedelta(minutes=40)
    for metric, value in (("heart_rate", 118.0), ("spo2", 92.0), ("resp_rate", 23.0), ("body_temp", 38.4)):
        add_observations(p1, metric, [(seen, value)], device_id=wearable)
    # p2: weight every morning at 08:00 UTC; taken on the last two of the week's slots only.
    plan = CarePlan(
        patient_id=p2,
        measurements=(MeasurementSchedule(metric="body_weight", times_of_day=(time(8, 0),), tolerance_s=3600),),
    )
    store_plan(db, plan)
    slots = daily_slots(now, time(8, 0), timedelta(hours=1))
    scale = bind_device(db, p2, "scale")
    add_observations(p2, "body_weight", [(t + timedelta(minutes=10), 80.0) for t in slots[-2:]], device_id=scale)
    clinician = team["clinician"]
    headers = auth_headers(clinician)

    response = await client.get("/api/v1/patients", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [p["patient_id"] for p in body["items"]] == [p1, p2, p3]
    assert body["next_cursor"] is None
    first, second, third = body["items"]
    assert first["display_name"] == "Test Patient"
    assert (first["open_alerts"], first["worst_alert"]["id"], first["worst_alert"]["severity"]) == (
        2,
        critical,
        "critical",
    )
    # NEWS2 (clinical.md): RR 23 -> 2, SpO2 92 -> 2, air -> 0, HR 118 -> 2, temp 38.4 -> 1;
    # blood pressure and consciousness not measured: named, not scored.
    assert first["news2"]["total"] == 7
    assert first["news2"]["risk"] == "high"
    assert set(first["news2"]["missing"]) == {"bp_systolic", "consciousness"}
    [device] = first["devices"]
    assert (device["device_id"], device["silent"], device["battery"]) == (wearable, True, None)
    assert 40 * 60 - 5 <= device["age_s"] <= 40 * 60 + 60
    assert first["silent_devices"] == 1
    assert first["adherence_pct"] is None  # nothing scheduled
    assert second["open_alerts"] == 2
    assert second["adherence_pct"] == round(100 * 2 / len(slots), 1)
    assert (third["open_alerts"], third["worst_alert"], third["news2"]["total"]) == (0, None, None)

    # Keyset pages of one give the same order, each page one audit event.
    before = len(audit_events(db, clinician, "patients"))
    seen_ids, cursor = [], None
    for _ in range(3):
        params: dict[str, Any] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/api/v1/patients", params=params, headers=headers)).json()
        seen_ids += [p["patient_id"] for p in page["items"]]
        cursor = page["next_cursor"]
    assert seen_ids == [p1, p2, p3]
    assert cursor is None
    assert len(audit_events(db, clinician, "patients")) == before + 3

    bad = await client.get("/api/v1/patients", params={"cursor": "bm90LW91cnM"}, headers=headers)
    assert_problem(bad, 422, "invalid_cursor")
    assert audit_events(db, clinician, "patients")[-1] == ("denied", None)


@pytest.mark.parametrize("role", ["patient", "ops"])
async def test_my_patients_is_for_clinicians_and_admins(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    role: str,
    make_patient: Callable[[], str],
    make_user: Callable[..., TestUser],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    user = make_user(role, patient_id=make_patient() if role == "patient" else None)
    response = await client.get("/api/v1/patients", headers=auth_headers(user))
    assert_problem(response, 403, "forbidden")
    assert audit_events(db, user, "patients") == [("denied", None)]


async def test_summary_holds_vitals_trends_news2_alerts_adherence_completeness_and_devices(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    team: dict[str, Any],
    auth_headers: Callable[[TestUser], dict[str, str]],
    add_observations: Callable[..., None],
) -> None:
    patient = team["patients"][0]
    now = datetime.now(UTC).replace(microsecond=0)
    wearable = bind_device(db, patient)
    db.execute("UPDATE devices SET battery = 0.42, battery_at = %s WHERE id = %s", (now, wearable))
    # Heart rate rising by 1/min per hour over the last 12 h (readings every 30 min): the
    # wearable covers 12 of the last 24 hours.
    hr: Points = [(now - timedelta(minutes=30 * k + 1), 90.0 - k * 0.5) for k in range(24)]
    add_observations(patient, "heart_rate", hr, device_id=wearable)
    add_observations(patient, "spo2", [(now - timedelta(minutes=5), 97.0)], device_id=wearable)
    cuff = bind_device(db, patient, "bp_cuff")
    add_observations(patient, "bp_systolic", [(now - timedelta(days=3), 128.0)], device_id=cuff)
    bottle = bind_device(db, patient, "pill_bottle")
    plan = CarePlan(
        patient_id=patient,
        medications=(MedicationSchedule(dose_id="metformin", times_of_day=(time(9, 0), time(21, 0)), window_s=3600),),
    )
    store_plan(db, plan)
    morning = daily_slots(now, time(9, 0), timedelta(hours=1))
    evening = daily_slots(now, time(21, 0), timedelta(hours=1))
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO observations (patient_id, device_id, metric, ts, value, received_at, seq, dose_id) "
            "VALUES (%s, %s, 'medication_taken', %s, 1, now(), %s, 'metformin')",
            [(patient, bottle, t + timedelta(minutes=5), i) for i, t in enumerate(morning)],
        )
    alert = raise_alert(db, patient, rule="spo2_low", severity="high")
    clinician = team["clinician"]

    response = await client.get(f"/api/v1/patients/{patient}/summary", headers=auth_headers(clinician))
    assert response.status_code == 200, response.text
    s = response.json()
    assert s["patient_id"] == patient
    vitals = {v["metric"]: v for v in s["vitals"]}
    assert set(vitals) == {"heart_rate", "spo2", "bp_systolic"}
    assert vitals["heart_rate"]["value"] == 90.0
    assert vitals["heart_rate"]["unit"] == "/min"
    assert 60 <= vitals["heart_rate"]["age_s"] <= 120
    assert vitals["heart_rate"]["direction"] == "rising"
    assert vitals["heart_rate"]["change_24h"] == pytest.approx(24.0, abs=2.0)
    buckets = vitals["heart_rate"]["trend"]
    assert 12 <= len(buckets) <= 13
    assert sum(b["n"] for b in buckets) == 24
    assert all(b["min"] <= b["mean"] <= b["max"] for b in buckets)
    assert vitals["bp_systolic"]["trend"] == []  # 3 days old: latest value, no 24 h trend
    assert vitals["bp_systolic"]["direction"] is None
    # NEWS2 from the latest of each parameter; the 3-day-old blood pressure is not scored.
    assert s["news2"]["total"] is not None
    assert set(s["news2"]["missing"]) == {"resp_rate", "bp_systolic", "consciousness", "body_temp"}
    assert [a["id"] for a in s["open_alerts"]] == [alert]
    adherence = s["adherence"]
    assert adherence["measurement_pct"] is None
    assert adherence["medication_pct"] == round(100 * len(morning) / (len(morning) + len(evening)), 1)
    [schedule] = adherence["schedules"]
    assert (schedule["schedule"], schedule["expected"], schedule["met"]) == (
        "dose:metformin",
        len(morning) + len(evening),
        len(morning),
    )
    # 12 h of readings touch 12 or 13 clock hours, depending on where the hour boundaries fall.
    assert s["completeness"]["devices"] in ({wearable: round(12 / 24, 3)}, {wearable: round(13 / 24, 3)})
    devices = {d["device_id"]: d for d in s["devices"]}
    assert set(devices) == {wearable, cuff, bottle}
    assert devices[wearable]["battery"] == pytest.approx(0.42)
    assert devices[wearable]["silent"] is False
    assert devices[cuff]["battery"] is None
    assert audit_events(db, clinician, "patient_summary") == [("allowed", patient)]


async def test_summary_answers_404_outside_the_callers_reach_and_audits_each_call(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    team: dict[str, Any],
    make_user: Callable[..., TestUser],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    patient = team["patients"][0]
    outsider = team["outsider"]
    for target in (patient, "no-such-patient"):
        response = await client.get(f"/api/v1/patients/{target}/summary", headers=auth_headers(outsider))
        assert_problem(response, 404, "patient_not_found")
    assert audit_events(db, outsider, "patient_summary") == [("denied", patient), ("denied", "no-such-patient")]
    # A patient sees their own summary, and no one else's.
    me = make_user("patient", patient_id=patient)
    assert (await client.get(f"/api/v1/patients/{patient}/summary", headers=auth_headers(me))).status_code == 200
    other = await client.get(f"/api/v1/patients/{team['other_patient']}/summary", headers=auth_headers(me))
    assert_problem(other, 404, "patient_not_found")
    assert audit_events(db, me, "patient_summary") == [("allowed", patient), ("denied", team["other_patient"])]


async def test_rollups_bucket_a_metric_with_time_bucket(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    team: dict[str, Any],
    auth_headers: Callable[[TestUser], dict[str, str]],
    add_observations: Callable[..., None],
) -> None:
    patient = team["patients"][0]
    day = datetime(2026, 3, 1, tzinfo=UTC)
    # 10:00-10:59 every 10 min: 60..110; 12:00 and 12:30: 70, 80.
    points = [(day + timedelta(hours=10, minutes=10 * k), 60.0 + 10 * k) for k in range(6)]
    points += [(day + timedelta(hours=12), 70.0), (day + timedelta(hours=12, minutes=30), 80.0)]
    add_observations(patient, "heart_rate", points)
    clinician = team["clinician"]
    headers = auth_headers(clinician)
    params = {"metric": "heart_rate", "start": "2026-03-01T00:00:00Z", "end": "2026-03-02T00:00:00Z"}

    hourly = await client.get(f"/api/v1/patients/{patient}/observations/rollups", params=params, headers=headers)
    assert hourly.status_code == 200, hourly.text
    body = hourly.json()
    assert (body["bucket"], body["unit"]) == ("1h", "/min")
    assert [(b["start"], b["n"], b["mean"], b["min"], b["max"]) for b in body["items"]] == [
        ("2026-03-01T10:00:00Z", 6, 85.0, 60.0, 110.0),
        ("2026-03-01T12:00:00Z", 2, 75.0, 70.0, 80.0),
    ]
    quarter = await client.get(
        f"/api/v1/patients/{patient}/observations/rollups", params=params | {"bucket": "15m"}, headers=headers
    )
    assert [b["n"] for b in quarter.json()["items"]] == [2, 1, 2, 1, 1, 1]
    daily = await client.get(
        f"/api/v1/patients/{patient}/observations/rollups", params=params | {"bucket": "1d"}, headers=headers
    )
    assert [(b["n"], b["mean"]) for b in daily.json()["items"]] == [(8, 82.5)]

    for bad in ({"bucket": "7m"}, {"metric": "mood"}, {"start": "2026-01-01T00:00:00Z"}):
        refused = await client.get(
            f"/api/v1/patients/{patient}/observations/rollups", params=params | bad, headers=headers
        )
        assert refused.status_code == 422, refused.text
    outside = await client.get(
        f"/api/v1/patients/{team['other_patient']}/observations/rollups", params=params, headers=headers
    )
    assert_problem(outside, 404, "patient_not_found")
    outcomes = audit_events(db, clinician, "observation_rollups")
    assert outcomes == [("allowed", patient)] * 3 + [("denied", team["other_patient"])]
    assert db.execute(
        "SELECT count(*) FROM audit_events WHERE actor_id = %s AND outcome = 'denied' AND resource LIKE %s",
        (clinician.id, "%rollups%"),
    ).fetchone() == (4,)
