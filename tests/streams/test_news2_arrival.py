"""NEWS2 through the real broker, the stack's Faust worker and the API (issue 10, ADR 0015):
a patient with a wearable and a BP cuff whose reading arrives after newer wearable readings
is scored at once with the exact total and band; then a consciousness check-in of new
confusion (C), entered through the API, adds 3."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from api.app import create_app
from api.security import hash_password
from api.settings import ApiSettings
from core.detectors.model import iso
from core.rules import Rule, Severity
from core.wire import DetectionRecord, Reading
from infra.stack import Stack
from tests.streams.support import DetectionLog, batch, minutes, rules, send_batches, vitals

PASSWORD = "correct horse battery staple"


def news2(records: list[DetectionRecord]) -> list[tuple[str, str]]:
    return [(r.rule.value, r.kind) for r in records if r.rule.value.startswith("news2")]


def enrol(db: psycopg.Connection, patient_id: str) -> str:
    """A patient with consent and a login of their own; returns the username."""
    username = f"pt-user-{uuid.uuid4().hex[:10]}"
    db.execute("INSERT INTO patients (id, display_name) VALUES (%s, %s)", (patient_id, "Late Cuff"))
    db.execute(
        "INSERT INTO consents (patient_id, granted_at) VALUES (%s, %s)",
        (patient_id, datetime.now(UTC) - timedelta(days=1)),
    )
    db.execute(
        "INSERT INTO users (username, password_hash, role, display_name, patient_id) VALUES (%s, %s, %s, %s, %s)",
        (username, hash_password(PASSWORD), "patient", "Late Cuff", patient_id),
    )
    return username


def check_in(stack: Stack, username: str, patient_id: str, level: str, observed_at: datetime) -> dict[str, Any]:
    """Log in as the patient and enter a level of consciousness through the API (in process)."""
    settings = ApiSettings(
        _env_file=None,
        environment="test",
        database_url=stack.app_db_url,
        kafka_bootstrap=stack.kafka_bootstrap,
        kafka_idempotent_producer=False,  # the embedded broker has none (ADR 0003)
        mqtt_host="127.0.0.1",
        mqtt_port=stack.ports.mqtt,
        mqtt_admin_password=stack.secrets.mqtt_admin_password,  # placeholders are refused outside development
        jwt_secret=secrets.token_urlsafe(32),
    )

    async def run() -> dict[str, Any]:
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app, client=("192.0.2.20", 50000))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
        ):
            token = await http.post("/api/v1/auth/token", data={"username": username, "password": PASSWORD})
            assert token.status_code == 200, token.text
            response = await http.post(
                f"/api/v1/patients/{patient_id}/consciousness",
                json={"level": level, "observed_at": observed_at.isoformat()},
                headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            )
            assert response.status_code == 202, response.text
            answer: dict[str, Any] = response.json()
            return answer

    return asyncio.run(run())


def test_a_late_cuff_reading_scores_exactly_and_new_confusion_adds_three(worker: Stack, db: psycopg.Connection) -> None:
    patient = f"news2-late-{uuid.uuid4().hex[:10]}"
    username = enrol(db, patient)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    log = DetectionLog(worker.kafka_bootstrap, {patient})

    # The wearable, every minute 0..10: RR 21 (2), SpO2 96 (0), pulse 95 (1), 37.0 degC (0):
    # 3, the low band, pending its 15-minute hold. A glucometer's 45 mg/dL at minute 10 is a
    # probe: once its detection is out, the worker has scored minute 10.
    wearable = [vitals(minutes(t0, m), hr=95, spo2=96, rr=21, temp=37.0) for m in range(11)]
    bootstrap = worker.kafka_bootstrap
    send_batches(bootstrap, [batch(patient, rs, device_id="wear-1", seq=i) for i, rs in enumerate(wearable)])
    send_batches(bootstrap, [batch(patient, [Reading("glucose", 45, minutes(t0, 10))], device_id="gluco-1")])
    assert "glucose_low_l2" in rules(log.wait_for(lambda rs: "glucose_low_l2" in rules(rs), timeout=60))
    assert news2(log.read()) == []

    # The cuff's reading of minute 5 arrives now, after the wearable's minutes 6..10:
    # systolic 100 scores 2, so 2 + 1 + 2 = 5, the medium band, raised at once.
    cuff = [Reading("bp_systolic", 100, minutes(t0, 5)), Reading("bp_diastolic", 65, minutes(t0, 5))]
    send_batches(worker.kafka_bootstrap, [batch(patient, cuff, device_id="cuff-1", seq=1)])
    got = log.wait_for(lambda rs: ("news2_medium", "raise") in news2(rs), timeout=60)
    assert news2(got) == [("news2_medium", "raise")]
    medium = next(r for r in got if r.rule is Rule.NEWS2_MEDIUM)
    assert medium.severity is Severity.HIGH
    assert medium.detected_at == minutes(t0, 10)  # when it arrived: the newest time scored
    assert medium.evidence["total"] == 5
    assert medium.evidence["risk"] == "medium"
    assert medium.evidence["scores"] == {
        "resp_rate": 2,
        "spo2": 0,
        "air_or_oxygen": 0,
        "bp_systolic": 2,
        "heart_rate": 1,
        "body_temp": 0,
    }
    assert medium.evidence["missing"] == ["consciousness"]
    assert medium.evidence["consciousness"] == "not reported"
    assert medium.evidence["late"] == ["bp_systolic"]
    assert medium.evidence["values"]["bp_systolic"] == {"value": 100.0, "ts": iso(minutes(t0, 5))}

    # New confusion entered by the patient through the API at minute 11: 5 + 3 = 8, high.
    answer = check_in(worker, username, patient, "C", minutes(t0, 11))
    assert answer["news2_points"] == 3
    got = log.wait_for(lambda rs: ("news2_high", "raise") in news2(rs), timeout=60)
    assert news2(got) == [("news2_medium", "raise"), ("news2_medium", "clear"), ("news2_high", "raise")]
    high = next(r for r in got if r.rule is Rule.NEWS2_HIGH)
    assert high.severity is Severity.CRITICAL
    assert high.detected_at == minutes(t0, 11)
    assert high.evidence["total"] == 8
    assert high.evidence["risk"] == "high"
    assert high.evidence["scores"]["consciousness"] == 3
    assert high.evidence["consciousness"] == "C"
    assert high.evidence["missing"] == []
    assert high.evidence["complete"] is True
    cleared = next(r for r in got if r.rule is Rule.NEWS2_MEDIUM and r.kind == "clear")
    assert cleared.clears == medium.detection_id
    assert cleared.evidence["reason"] == "escalated"

    # Stored like any reading, from the check-in's virtual device.
    deadline = time.monotonic() + 30
    row = None
    while row is None and time.monotonic() < deadline:
        row = db.execute(
            "SELECT value, device_id FROM observations WHERE patient_id = %s AND metric = 'consciousness'", (patient,)
        ).fetchone()
        if row is None:
            time.sleep(0.3)
    assert row is not None
    assert row[0] == 1.0
    assert row[1] == answer["device_id"]
    assert row[1].startswith("checkin:")


def test_a_cuff_reading_with_the_same_time_as_a_wearable_reading_arriving_later_is_scored(worker: Stack) -> None:
    # The review's case: the wearable alone scores 4 (RR 22: 2, SpO2 95: 1, pulse 95: 1), the
    # low band; the cuff's systolic 90 taken at the same second scores 3: 7, the high band.
    patient = f"news2-same-{uuid.uuid4().hex[:10]}"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    log = DetectionLog(worker.kafka_bootstrap, {patient})
    wearable = [vitals(minutes(t0, m), hr=95, spo2=95, rr=22, temp=37.0) for m in range(4)]
    bootstrap = worker.kafka_bootstrap
    send_batches(bootstrap, [batch(patient, rs, device_id="wear-1", seq=i) for i, rs in enumerate(wearable)])
    send_batches(bootstrap, [batch(patient, [Reading("glucose", 45, minutes(t0, 3))], device_id="gluco-1")])
    log.wait_for(lambda rs: "glucose_low_l2" in rules(rs), timeout=60)
    assert news2(log.read()) == []  # the low band holds 15 minutes before it raises

    cuff = [Reading("bp_systolic", 90, minutes(t0, 3)), Reading("bp_diastolic", 60, minutes(t0, 3))]
    send_batches(bootstrap, [batch(patient, cuff, device_id="cuff-1", seq=1)])
    got = log.wait_for(lambda rs: ("news2_high", "raise") in news2(rs), timeout=60)
    assert news2(got) == [("news2_high", "raise")]
    high = next(r for r in got if r.rule is Rule.NEWS2_HIGH)
    assert (high.severity, high.detected_at) == (Severity.CRITICAL, minutes(t0, 3))
    assert (high.evidence["total"], high.evidence["risk"]) == (7, "high")
    assert high.evidence["scores"]["bp_systolic"] == 3
    assert high.evidence["late"] == ["bp_systolic"]
