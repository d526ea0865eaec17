"""The patient's own routes (api/portal): `GET /api/v1/me/health` and `GET /api/v1/me/care-plan`.

A patient gets their own record only (there is no id to ask for another's, and another
patient's readings never show); a clinician, an admin or ops gets 403 `not_a_patient` (the
address names no patient, so there is nothing to hide with a 404); each call writes exactly one
audit event; readings are put in plain words against the care plan's limits, alerts without
rule ids, devices with battery and what to do when one is silent; adherence per week and
streaks come from the detector's own slots.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta

import httpx
import psycopg
import pytest

from core.careplan import CarePlan, HfWeightGain, MeasurementSchedule, News2Settings, encode_care_plan
from tests.api.conftest import TestUser
from tests.api.support import assert_problem, raise_alert
from tests.api.test_patients_api import bind_device, store_plan

pytestmark = pytest.mark.anyio


def audit_count(db: psycopg.Connection, user: TestUser) -> int:
    row = db.execute("SELECT count(*) FROM audit_events WHERE actor_id = %s", (user.id,)).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_patient_sees_their_own_readings_in_plain_words(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    make_patient: Callable[[], str],
    make_user: Callable[..., TestUser],
    add_observations: Callable[..., None],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    me, other = make_patient(), make_patient()
    patient = make_user("patient", patient_id=me)
    now = datetime.now(UTC)
    # Systolic 190 is above the plan's crisis level of 180; an open crisis alert means "they have been told".
    add_observations(me, "bp_systolic", [(now - timedelta(hours=h), 150 + 10 * (3 - h)) for h in range(4)], "cuff")
    add_observations(me, "spo2", [(now - timedelta(minutes=m), 96) for m in (5, 65, 125, 185)], "wrist")
    add_observations(other, "glucose", [(now - timedelta(minutes=5), 45)], "meter")
    raise_alert(db, me, rule="bp_crisis_confirmed", severity="critical")
    raise_alert(db, other, rule="glucose_low_l2")
    wrist = bind_device(db, me, "wearable")
    db.execute("UPDATE devices SET battery = 0.12, battery_at = %s WHERE id = %s", (now, wrist))

    answer = await client.get("/api/v1/me/health", headers=auth_headers(patient))

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["patient_id"] == me
    vitals = {v["metric"]: v for v in body["vitals"]}
    assert set(vitals) == {"bp_systolic", "spo2"}  # never the other patient's glucose
    bp = vitals["bp_systolic"]
    assert (bp["value"], bp["status"]) == (180.0, "within")
    assert bp["meaning"] == "Your reading is inside the limits your care team set. There is nothing more to do."
    assert [line["value"] for line in bp["limits"]] == [180.0]
    assert bp["trend_words"] == "It went up over the last day."
    assert len(bp["trend_24h"]) == 4
    assert len(bp["trend_7d"]) == 4
    spo2 = vitals["spo2"]
    assert spo2["status"] == "within"
    assert [(line["value"], line["direction"]) for line in spo2["limits"]] == [(90.0, "low")]
    assert spo2["name"] == "Oxygen level"
    assert [a["what"] for a in body["alerts"]] == ["Your blood pressure was very high twice in a row."]
    assert body["alerts"][0]["status"] == "Your care team has been told."
    assert "bp_crisis" not in answer.text  # rule ids never reach the patient
    assert "glucose" not in answer.text
    assert body["news2"]["total"] is not None
    assert body["news2"]["words"].startswith(f"Your score is {body['news2']['total']}.")
    [device] = body["devices"]
    assert (device["kind"], device["battery_pct"], device["battery_low"], device["silent"]) == (
        "Wrist band",
        12,
        True,
        True,  # a wearable with no reading of its own is silent
    )
    assert device["advice"] == body["silent_help"]
    assert "charge it" in device["battery_words"]
    assert audit_count(db, patient) == 1


async def test_above_the_limit_says_who_was_told_and_when_to_call_for_help(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    make_patient: Callable[[], str],
    make_user: Callable[..., TestUser],
    add_observations: Callable[..., None],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    me = make_patient()
    patient = make_user("patient", patient_id=me)
    now = datetime.now(UTC)
    add_observations(me, "bp_systolic", [(now - timedelta(minutes=3), 192)])
    add_observations(me, "heart_rate", [(now - timedelta(minutes=3), 135)])
    raise_alert(db, me, rule="heart_rate_high", severity="medium")

    body = (await client.get("/api/v1/me/health", headers=auth_headers(patient))).json()

    vitals = {v["metric"]: v for v in body["vitals"]}
    assert vitals["bp_systolic"]["status"] == "above"
    assert vitals["bp_systolic"]["meaning"] == (
        "Your reading is above the limit of 180 mmHg your care team set. If it stays high, they will be told."
    )
    assert "call emergency services" in vitals["bp_systolic"]["safety"]
    assert vitals["heart_rate"]["meaning"] == (
        "Your reading is above the limit of 130 beats a minute your care team set. They have been told."
    )


@pytest.mark.parametrize("role", ["clinician", "admin", "ops"])
async def test_other_roles_get_403_and_one_denied_event(
    role: str,
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    make_user: Callable[..., TestUser],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    user = make_user(role)
    for path in ("/api/v1/me/health", "/api/v1/me/care-plan"):
        answer = await client.get(path, headers=auth_headers(user))
        assert_problem(answer, 403, "not_a_patient")
    rows = db.execute(
        "SELECT resource, outcome, patient_id FROM audit_events WHERE actor_id = %s ORDER BY id", (user.id,)
    ).fetchall()
    assert rows == [("me/health", "denied", None), ("me/care_plan", "denied", None)]


async def test_without_a_token_401(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/me/health")).status_code == 401
    assert (await client.get("/api/v1/me/care-plan")).status_code == 401


async def test_care_plan_in_plain_words_with_weeks_and_streak(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    make_patient: Callable[[], str],
    make_user: Callable[..., TestUser],
    add_observations: Callable[..., None],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    me, other = make_patient(), make_patient()
    patient = make_user("patient", patient_id=me)
    now = datetime.now(UTC)
    plan = CarePlan(
        patient_id=me,
        timezone="UTC",
        effective_from=now - timedelta(days=40),
        hf_weight=HfWeightGain(enabled=True),
        news2=News2Settings(spo2_scale=2),
        measurements=(MeasurementSchedule(metric="body_weight", times_per_day=1),),
        note="We set your oxygen limit lower because of your lungs.",
    )
    store_plan(db, plan)
    db.execute(
        "INSERT INTO care_plans (patient_id, version, plan) VALUES (%s, 1, %s::jsonb)",
        (other, encode_care_plan(CarePlan(patient_id=other, note="not yours")).decode()),
    )
    # Weighed every day of the last 10 local days except 4 days ago: a run of 3 (yesterday back to
    # 3 days ago). Today's once-a-day slot closes at midnight, so today neither counts nor breaks it.
    today = now.date()
    weighed = [datetime.combine(today - timedelta(days=d), time(0, 30), tzinfo=UTC) for d in range(10) if d != 4]
    add_observations(me, "body_weight", [(ts, 80.0) for ts in weighed if ts < now], "scale")

    answer = await client.get("/api/v1/me/care-plan", headers=auth_headers(patient))

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["patient_id"] == me
    assert body["note"] == "We set your oxygen limit lower because of your lungs."
    assert body["conditions"] == ["heart_failure", "copd"]
    [measure] = body["measurements"]
    assert measure["words"] == "Measure your weight once a day, at any time."
    assert "If your weight goes up by 1.4 kg in one day, or by 2.3 kg in one week." in body["limits"]
    assert any(s.startswith("If your oxygen level goes below 90%.") for s in body["limits"])
    assert body["streak"]["current"] == 3
    assert body["streak"]["best"] == 5  # 9 to 5 days ago
    assert body["streak"]["words"] == [
        "You have kept your plan 3 days in a row. Well done.",
        "Your best run in the last four weeks was 5 days in a row.",
    ]
    weeks = body["weeks"]
    assert len(weeks) == 4
    last = weeks[-1]
    assert last["end"] == today.isoformat()
    assert (last["days_with_plan"], last["days_kept"]) == (6, 5)
    assert (last["expected"], last["met"]) == (6, 5)
    assert last["words"][-1] == "Good effort. Every reading helps your care team."
    assert audit_count(db, patient) == 1


async def test_a_patient_without_a_plan_gets_the_default_limits(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    make_patient: Callable[[], str],
    make_user: Callable[..., TestUser],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    patient = make_user("patient", patient_id=make_patient())
    body = (await client.get("/api/v1/me/care-plan", headers=auth_headers(patient))).json()
    assert body["version"] == 0
    assert body["intro"].startswith("Your care team has not made a plan for you yet.")
    assert body["measurements"] == []
    assert body["doses"] == []
    assert all(w["expected"] == 0 and w["words"][-1] == "Nothing was planned this week." for w in body["weeks"])
    assert body["conditions"] == []
    assert audit_count(db, patient) == 1


async def test_a_note_longer_than_2000_characters_is_refused(
    client: httpx.AsyncClient,
    make_patient: Callable[[], str],
    make_user: Callable[..., TestUser],
    make_care_team: Callable[..., uuid.UUID],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    patient_id = make_patient()
    clinician = make_user("clinician")
    make_care_team([clinician], [patient_id])
    headers = auth_headers(clinician)
    too_long = {"plan": {"patient_id": patient_id, "note": "x" * 2001}, "version": 0}
    answer = await client.put(f"/api/v1/patients/{patient_id}/care-plan", json=too_long, headers=headers)
    assert answer.status_code == 422, answer.text
    assert "note" in answer.text
