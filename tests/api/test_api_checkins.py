"""Consciousness check-ins: who may enter one, a bad level or time answered as a clear
problem, consent, the audit trail, and the reading published to `rpm.readings.v1` in the
bridge's wire format (through the real broker)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from api.app import create_app
from core.wire import READINGS, Reading, ReadingBatch, readings_record_decoder
from infra.stack import Stack
from tests.api.support import assert_problem, closed_port

pytestmark = pytest.mark.anyio


def url(patient_id: str) -> str:
    return f"/api/v1/patients/{patient_id}/consciousness"


@pytest.fixture
async def client(anyio_backend: str, settings_for: Any, serve: Any) -> AsyncIterator[httpx.AsyncClient]:
    # As the stack runs it: the embedded broker has no idempotent producer (ADR 0003).
    async with serve(create_app(settings_for(kafka_idempotent_producer=False))) as http:
        yield http


@pytest.fixture
def consent(db: psycopg.Connection) -> Callable[[str], None]:
    def give(patient_id: str) -> None:
        db.execute(
            "INSERT INTO consents (patient_id, granted_at) VALUES (%s, %s)",
            (patient_id, datetime.now(UTC) - timedelta(days=1)),
        )

    return give


@pytest.fixture
def ward(make_patient: Any, make_user: Any, make_care_team: Any, consent: Any) -> dict[str, Any]:
    mine, theirs = make_patient(), make_patient()
    for patient_id in (mine, theirs):
        consent(patient_id)
    clinician = make_user("clinician")
    make_care_team([clinician], [mine])
    return {
        "mine": mine,
        "theirs": theirs,
        "clinician": clinician,
        "patient": make_user("patient", patient_id=mine),
        "admin": make_user("admin"),
    }


async def published(bootstrap: str, patient_id: str, count: int = 1, wait_s: float = 30) -> list[ReadingBatch]:
    """This patient's reading batches on the readings topic (waits for `count`); a record holds
    one batch or the batches of several patients of its partition (ADR 0034)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(READINGS.name, p) for p in range(READINGS.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[ReadingBatch] = []
        deadline = time.monotonic() + wait_s
        while len(found) < count and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=200)
            for records in fetched.values():
                for r in records:
                    decoded = readings_record_decoder.decode(r.value)
                    batches = decoded if isinstance(decoded, list) else [decoded]
                    found += [b for b in batches if b.patient_id == patient_id]
        return found
    finally:
        await consumer.stop()


async def test_a_patient_enters_new_confusion_for_themself(
    client: httpx.AsyncClient, ward: dict[str, Any], auth_headers: Any, audit_rows: Any, stack: Stack
) -> None:
    patient = ward["patient"]
    observed = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    response = await client.post(
        url(ward["mine"]),
        json={"level": "C", "observed_at": observed.isoformat()},
        headers=auth_headers(patient),
    )

    assert response.status_code == 202, response.text
    body = response.json()
    source = f"checkin:{patient.id}"
    assert body == {
        "patient_id": ward["mine"],
        "metric": "consciousness",
        "loinc": "67775-7",
        "level": "C",
        "value": 1.0,
        "observed_at": observed.isoformat().replace("+00:00", "Z"),
        "device_id": source,
        "news2_points": 3,
    }
    [batch] = await published(stack.kafka_bootstrap, ward["mine"])
    assert batch.patient_id == ward["mine"]
    assert batch.device_id == source
    assert batch.readings == [Reading("consciousness", 1.0, observed)]
    assert batch.quarantined is False
    [row] = audit_rows(actor_id=patient.id, action="create")
    assert row["outcome"] == "allowed"
    assert row["patient_id"] == ward["mine"]
    assert row["resource"] == "observations"
    assert row["detail"]["metric"] == "consciousness"
    assert row["detail"]["source"] == source
    assert "C" not in row["detail"].values()  # the level is a health value: not in the audit


async def test_a_clinician_of_the_care_team_enters_a_level_observed_now(
    client: httpx.AsyncClient, ward: dict[str, Any], auth_headers: Any, stack: Stack
) -> None:
    before = datetime.now(UTC)
    response = await client.post(url(ward["mine"]), json={"level": "A"}, headers=auth_headers(ward["clinician"]))
    assert response.status_code == 202, response.text
    assert response.json()["news2_points"] == 0
    [batch] = await published(stack.kafka_bootstrap, ward["mine"])
    [reading] = batch.readings
    assert (reading.metric, reading.value) == ("consciousness", 0.0)
    assert before <= reading.ts <= datetime.now(UTC)
    assert batch.device_id == f"checkin:{ward['clinician'].id}"


async def test_others_are_refused_and_audited(
    client: httpx.AsyncClient, ward: dict[str, Any], auth_headers: Any, audit_rows: Any, stack: Stack
) -> None:
    # Another team's patient and a patient id that does not exist answer the same 404.
    for who, patient_id in [
        ("clinician", ward["theirs"]),
        ("clinician", "pt-does-not-exist"),
        ("patient", ward["theirs"]),
    ]:
        response = await client.post(url(patient_id), json={"level": "C"}, headers=auth_headers(ward[who]))
        assert_problem(response, 404, "patient_not_found")
    response = await client.post(url(ward["mine"]), json={"level": "C"}, headers=auth_headers(ward["admin"]))
    assert_problem(response, 403, "role_not_allowed")
    response = await client.post(url(ward["mine"]), json={"level": "C"})
    assert_problem(response, 401, "not_authenticated")

    denied = audit_rows(actor_id=ward["clinician"].id, action="create")
    assert [(r["patient_id"], r["outcome"], r["detail"]["reason"]) for r in denied] == [
        (ward["theirs"], "denied", "not_visible"),
        ("pt-does-not-exist", "denied", "not_visible"),
    ]
    assert [r["detail"]["reason"] for r in audit_rows(actor_id=ward["admin"].id, action="create")] == ["role"]
    assert await published(stack.kafka_bootstrap, ward["theirs"], wait_s=1) == []
    assert await published(stack.kafka_bootstrap, ward["mine"], wait_s=1) == []


@pytest.mark.parametrize("level", ["X", "c", "alert", "", 1, None, ["C"]])
async def test_a_bad_level_is_a_clear_422(
    client: httpx.AsyncClient, ward: dict[str, Any], auth_headers: Any, level: Any
) -> None:
    response = await client.post(url(ward["mine"]), json={"level": level}, headers=auth_headers(ward["patient"]))
    body = assert_problem(response, 422, "validation_error")
    [error] = body["errors"]
    assert error["loc"] == ["body", "level"]
    assert error["type"] == "acvpu_level"
    assert "must be one of A, C, V, P, U" in body["detail"]


async def test_a_missing_level_or_an_unknown_field_is_a_422(
    client: httpx.AsyncClient, ward: dict[str, Any], auth_headers: Any
) -> None:
    headers = auth_headers(ward["patient"])
    assert_problem(await client.post(url(ward["mine"]), json={}, headers=headers), 422, "validation_error")
    extra = {"level": "A", "value": 0}
    assert_problem(await client.post(url(ward["mine"]), json=extra, headers=headers), 422, "validation_error")
    no_zone = {"level": "A", "observed_at": "2026-01-05T06:00:00"}
    assert_problem(await client.post(url(ward["mine"]), json=no_zone, headers=headers), 422, "validation_error")


async def test_an_observation_time_out_of_range_is_refused(
    client: httpx.AsyncClient, ward: dict[str, Any], auth_headers: Any, audit_rows: Any, stack: Stack
) -> None:
    headers = auth_headers(ward["patient"])
    now = datetime.now(UTC)
    ahead = {"level": "C", "observed_at": (now + timedelta(minutes=10)).isoformat()}
    assert_problem(await client.post(url(ward["mine"]), json=ahead, headers=headers), 422, "observed_at_in_future")
    old = {"level": "C", "observed_at": (now - timedelta(days=2)).isoformat()}
    assert_problem(await client.post(url(ward["mine"]), json=old, headers=headers), 422, "observed_at_too_old")
    reasons = [r["detail"]["reason"] for r in audit_rows(actor_id=ward["patient"].id, action="create")]
    assert reasons == ["observed_at_in_future", "observed_at_too_old"]
    assert await published(stack.kafka_bootstrap, ward["mine"], wait_s=1) == []


async def test_no_consent_no_ingestion(
    client: httpx.AsyncClient, make_patient: Any, make_user: Any, auth_headers: Any, stack: Stack
) -> None:
    patient_id = make_patient()
    patient = make_user("patient", patient_id=patient_id)
    response = await client.post(url(patient_id), json={"level": "C"}, headers=auth_headers(patient))
    assert_problem(response, 403, "no_consent")
    assert await published(stack.kafka_bootstrap, patient_id, wait_s=1) == []


async def test_kafka_away_answers_503_and_audits_the_error(
    settings_for: Any, serve: Any, ward: dict[str, Any], auth_headers: Any, audit_rows: Any
) -> None:
    app = create_app(settings_for(kafka_bootstrap=f"127.0.0.1:{closed_port()}", kafka_idempotent_producer=False))
    async with serve(app) as client:
        response = await client.post(url(ward["mine"]), json={"level": "C"}, headers=auth_headers(ward["patient"]))
    assert_problem(response, 503, "readings_unavailable")
    assert response.headers["retry-after"] == "5"
    [row] = audit_rows(actor_id=ward["patient"].id, action="create")
    assert (row["outcome"], row["detail"]["reason"]) == ("error", "not_published")


@pytest.mark.parametrize(
    "observed_at",
    ["0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00", "2026-13-01T00:00:00Z"],
)
async def test_dates_at_the_ends_of_the_calendar_are_a_422_not_a_500(
    client: httpx.AsyncClient, ward: dict[str, Any], auth_headers: Any, observed_at: str
) -> None:
    body = {"level": "C", "observed_at": observed_at}
    response = await client.post(url(ward["mine"]), json=body, headers=auth_headers(ward["patient"]))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
