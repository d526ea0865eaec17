"""Care plans through the API: read (default and stored), change with optimistic concurrency,
validation, the audit trail with before/after, the record on `rpm.care-plans.v1` (real
broker), and the answer when Kafka is away (nothing stored)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from api.app import create_app
from core.careplan import decode_care_plan
from core.wire import CARE_PLANS
from tests.api.support import assert_problem, closed_port

pytestmark = pytest.mark.anyio


def url(patient_id: str) -> str:
    return f"/api/v1/patients/{patient_id}/care-plan"


@pytest.fixture
async def client(anyio_backend: str, settings_for: Any, serve: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(settings_for(kafka_idempotent_producer=False))) as http:
        yield http


@pytest.fixture
def ward(make_patient: Any, make_user: Any, make_care_team: Any) -> dict[str, Any]:
    mine, theirs = make_patient(), make_patient()
    clinician = make_user("clinician")
    make_care_team([clinician], [mine])
    return {
        "mine": mine,
        "theirs": theirs,
        "clinician": clinician,
        "patient": make_user("patient", patient_id=mine),
        "admin": make_user("admin"),
        "ops": make_user("ops"),
    }


SPO2_85 = {
    "limits": [
        {"rule": "spo2_low", "metric": "spo2", "direction": "low", "raise_at": 85, "clear_at": 88, "sustained_s": 600}
    ]
}


async def plan_records(bootstrap: str, patient_id: str, count: int, wait_s: float = 30) -> list[bytes]:
    """Values keyed by this patient on the care-plan topic (waits for `count`)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(CARE_PLANS.name, p) for p in range(CARE_PLANS.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[bytes] = []
        deadline = time.monotonic() + wait_s
        while len(found) < count and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=200)
            for records in fetched.values():
                found += [r.value for r in records if r.key == patient_id.encode()]
        return found
    finally:
        await consumer.stop()


async def test_a_patient_without_a_plan_reads_the_default_plan_version_0(
    client: httpx.AsyncClient, ward: dict[str, Any], auth_headers: Callable[..., dict[str, str]]
) -> None:
    for who in ("clinician", "patient", "admin"):
        response = await client.get(url(ward["mine"]), headers=auth_headers(ward[who]))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["version"] == 0
        assert body["updated_by"] is None
        assert response.headers["etag"] == '"0"'
        assert response.headers["cache-control"] == "no-store"
        spo2 = next(limit for limit in body["plan"]["limits"] if limit["rule"] == "spo2_low")
        assert spo2["raise_at"] == 90


async def test_a_change_is_versioned_published_and_audited_with_before_and_after(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    auth_headers: Callable[..., dict[str, str]],
    audit_rows: Callable[..., list[dict[str, Any]]],
    settings_for: Any,
) -> None:
    headers = auth_headers(ward["clinician"])
    response = await client.put(url(ward["mine"]), json={"plan": SPO2_85}, headers={**headers, "If-Match": '"0"'})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == 1
    assert body["updated_by"] == str(ward["clinician"].id)
    assert response.headers["etag"] == '"1"'
    assert body["plan"]["limits"][0]["raise_at"] == 85
    assert body["plan"]["effective_from"] is not None

    read = (await client.get(url(ward["mine"]), headers=headers)).json()
    assert read["version"] == 1
    assert read["plan"] == body["plan"]

    # Second change with the version in the body.
    second = {"limits": [{**SPO2_85["limits"][0], "raise_at": 86}]}
    response = await client.put(url(ward["mine"]), json={"plan": second, "version": 1}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2

    values = await plan_records(settings_for().kafka_bootstrap, ward["mine"], count=2)
    assert len(values) == 2
    plans = [decode_care_plan(v) for v in values]
    assert [p.version for p in plans] == [1, 2]
    assert [p.limits[0].raise_at for p in plans] == [85, 86]
    assert all(p.patient_id == ward["mine"] for p in plans)

    updates = audit_rows(patient_id=ward["mine"], action="update", outcome="allowed")
    assert len(updates) == 2
    first = updates[0]["detail"]
    assert first["version"] == 1
    assert next(x for x in first["before"]["limits"] if x["rule"] == "spo2_low")["raise_at"] == 90
    assert first["after"]["limits"][0]["raise_at"] == 85


async def test_a_plan_read_edited_and_sent_back_is_the_next_version(
    client: httpx.AsyncClient, ward: dict[str, Any], auth_headers: Callable[..., dict[str, str]]
) -> None:
    headers = auth_headers(ward["clinician"])
    first = await client.put(url(ward["mine"]), json={"plan": SPO2_85, "version": 0}, headers=headers)
    assert first.status_code == 200, first.text
    read = await client.get(url(ward["mine"]), headers=headers)
    plan = read.json()["plan"]
    plan["limits"][0]["raise_at"] = 84
    plan["timezone"] = "Europe/Amsterdam"
    second = await client.put(
        url(ward["mine"]), json={"plan": plan}, headers={**headers, "If-Match": read.headers["etag"]}
    )
    assert second.status_code == 200, second.text
    stored = second.json()
    assert stored["version"] == 2
    assert stored["plan"]["version"] == 2
    assert stored["plan"]["timezone"] == "Europe/Amsterdam"
    assert stored["plan"]["limits"][0]["raise_at"] == 84
    # The new version takes effect now, not when the version it was edited from did.
    effective = [datetime.fromisoformat(p["plan"]["effective_from"]) for p in (first.json(), stored)]
    assert effective[1] > effective[0]


async def test_stale_versions_conflict_and_a_missing_version_is_required(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    auth_headers: Callable[..., dict[str, str]],
    audit_rows: Callable[..., list[dict[str, Any]]],
) -> None:
    headers = auth_headers(ward["admin"])
    ok = await client.put(url(ward["mine"]), json={"plan": SPO2_85, "version": 0}, headers=headers)
    assert ok.status_code == 200, ok.text
    stale_header = await client.put(url(ward["mine"]), json={"plan": SPO2_85}, headers={**headers, "If-Match": '"0"'})
    assert_problem(stale_header, 412, "precondition_failed")
    stale_body = await client.put(url(ward["mine"]), json={"plan": SPO2_85, "version": 0}, headers=headers)
    assert_problem(stale_body, 409, "version_conflict")
    missing = await client.put(url(ward["mine"]), json={"plan": SPO2_85}, headers=headers)
    assert_problem(missing, 428, "precondition_required")
    garbage = await client.put(url(ward["mine"]), json={"plan": SPO2_85}, headers={**headers, "If-Match": "abc"})
    assert_problem(garbage, 412, "precondition_failed")
    assert (await client.get(url(ward["mine"]), headers=headers)).json()["version"] == 1
    denied = audit_rows(patient_id=ward["mine"], action="update", outcome="denied")
    assert [row["detail"]["reason"] for row in denied] == [
        "precondition_failed",
        "version_conflict",
        "precondition_required",
        "precondition_failed",
    ]


@pytest.mark.parametrize(
    ("plan", "fragment"),
    [
        (
            {"limits": [{"rule": "spo2_low", "metric": "spo2", "direction": "low", "raise_at": 92, "clear_at": 90}]},
            "clears at or above",
        ),
        (
            {"limits": [{"rule": "spo2_low", "metric": "nonsense", "direction": "low", "raise_at": 1, "clear_at": 2}]},
            "unknown metric",
        ),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"news2": {"spo2_scale": 3}}, "spo2_scale"),
        ({"patient_id": "someone-else"}, "names patient"),
        ({"limits": "many"}, "Expected `array`"),
    ],
)
async def test_an_invalid_plan_is_refused_with_the_reason_and_nothing_changes(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    auth_headers: Callable[..., dict[str, str]],
    plan: dict[str, Any],
    fragment: str,
) -> None:
    headers = auth_headers(ward["clinician"])
    response = await client.put(url(ward["mine"]), json={"plan": plan, "version": 0}, headers=headers)
    body = assert_problem(response, 422, "invalid_care_plan")
    assert fragment in body["detail"]
    assert (await client.get(url(ward["mine"]), headers=headers)).json()["version"] == 0


async def test_who_may_read_and_change(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    auth_headers: Callable[..., dict[str, str]],
    audit_rows: Callable[..., list[dict[str, Any]]],
) -> None:
    change = {"plan": SPO2_85, "version": 0}
    # Outside one's scope: 404 for reads and changes alike, and the same answer as an unknown id.
    for who in ("clinician", "patient", "ops"):
        headers = auth_headers(ward[who])
        for patient_id in (ward["theirs"], "no-such-patient"):
            assert_problem(await client.get(url(patient_id), headers=headers), 404, "patient_not_found")
            assert_problem(await client.put(url(patient_id), json=change, headers=headers), 404, "patient_not_found")
    assert_problem(await client.get(url(ward["mine"]), headers=auth_headers(ward["ops"])), 404, "patient_not_found")
    # The patient reads their own plan but does not change it.
    patient = auth_headers(ward["patient"])
    assert (await client.get(url(ward["mine"]), headers=patient)).status_code == 200
    assert_problem(await client.put(url(ward["mine"]), json=change, headers=patient), 403, "care_team_only")
    assert_problem(await client.put(url(ward["mine"]), json=change), 401, "not_authenticated")
    theirs = audit_rows(patient_id=ward["theirs"], resource="care_plan")
    assert len(theirs) == 6  # clinician, patient and ops, a read and a change each: one event per request
    assert {row["outcome"] for row in theirs} == {"denied"}


async def test_kafka_away_answers_503_and_stores_nothing(
    anyio_backend: str,
    settings_for: Any,
    serve: Any,
    ward: dict[str, Any],
    auth_headers: Callable[..., dict[str, str]],
    audit_rows: Callable[..., list[dict[str, Any]]],
    db: psycopg.Connection,
) -> None:
    app = create_app(settings_for(kafka_bootstrap=f"127.0.0.1:{closed_port()}", kafka_idempotent_producer=False))
    async with serve(app) as client:
        headers = auth_headers(ward["clinician"])
        response = await client.put(url(ward["mine"]), json={"plan": SPO2_85, "version": 0}, headers=headers)
        assert_problem(response, 503, "care_plans_unavailable")
        assert response.headers["retry-after"] == "5"
    assert db.execute("SELECT count(*) FROM care_plans WHERE patient_id = %s", (ward["mine"],)).fetchone() == (0,)
    errors = audit_rows(patient_id=ward["mine"], action="update")
    assert [row["outcome"] for row in errors] == ["error"]
    assert errors[0]["detail"]["reason"] == "not_published"
