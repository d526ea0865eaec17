"""One reading's whole real path: device (MQTT 5, own credentials) -> Mosquitto -> ingest
bridge -> Kafka -> Faust storage agent -> TimescaleDB -> API behind a login."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from core.wire import telemetry_topic
from infra.stack import Stack
from tests.helpers import Device, count_rows, create_patient, payload, provision, reading, wait_for


def _login(stack: Stack, username: str, password: str) -> str:
    response = httpx.post(
        f"http://127.0.0.1:{stack.ports.api}/api/v1/auth/token",
        data={"username": username, "password": password},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def _clinician_for(db: psycopg.Connection, patient_id: str) -> tuple[str, str]:
    from api.security import hash_password

    username, password = f"clin-{patient_id}", "correct horse battery staple"
    team = db.execute("INSERT INTO care_teams (name) VALUES (%s) RETURNING id", (f"team-{patient_id}",)).fetchone()
    user = db.execute(
        "INSERT INTO users (username, password_hash, role, display_name) VALUES (%s, %s, 'clinician', 'Dr T') "
        "RETURNING id",
        (username, hash_password(password)),
    ).fetchone()
    assert team
    assert user
    db.execute("INSERT INTO care_team_members VALUES (%s, %s)", (team[0], user[0]))
    db.execute("INSERT INTO care_team_patients VALUES (%s, %s)", (team[0], patient_id))
    return username, password


def _rows(db: psycopg.Connection, patient_id: str) -> list[tuple[object, ...]]:
    return db.execute(
        "SELECT ts, metric, value, seq, device_id, received_at FROM observations WHERE patient_id = %s ORDER BY ts",
        (patient_id,),
    ).fetchall()


def test_readings_published_over_mqtt_are_served_by_the_api(platform: Stack, db: psycopg.Connection) -> None:
    patient = create_patient(db)
    creds = provision(platform, patient)
    device = Device(platform, creds.username, creds.password)
    assert not device.connect().is_failure
    now = datetime.now(UTC).replace(microsecond=0)
    sent = []
    for i in range(5):
        ts = now - timedelta(minutes=5 - i)
        value = 70 + i
        # Temperature in degF exercises unit normalisation on the way.
        rc = device.send(i + 1, [reading("heart_rate", value, "/min", ts), reading("body_temp", 98.6, "[degF]", ts)])
        assert rc.value < 0x80, str(rc)
        sent.append((ts, value))
    device.close()

    assert wait_for(lambda: count_rows(db, patient) == 10, timeout=90), count_rows(db, patient)

    username, password = _clinician_for(db, patient)
    token = _login(platform, username, password)
    response = httpx.get(
        f"http://127.0.0.1:{platform.ports.api}/api/v1/patients/{patient}/observations",
        params={
            "metric": "heart_rate",
            "start": (now - timedelta(hours=1)).isoformat(),
            "end": (now + timedelta(minutes=1)).isoformat(),
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [(datetime.fromisoformat(i["ts"]), i["value"]) for i in items] == sent
    assert all(i["device_id"] == creds.device_id for i in items)
    temps = db.execute(
        "SELECT value FROM observations WHERE patient_id = %s AND metric = 'body_temp'", (patient,)
    ).fetchall()
    assert [round(t[0], 3) for t in temps] == [37.0] * 5


def test_the_same_messages_published_twice_give_the_same_rows(platform: Stack, db: psycopg.Connection) -> None:
    patient = create_patient(db)
    creds = provision(platform, patient)
    device = Device(platform, creds.username, creds.password)
    device.connect()
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    messages = [
        payload(creds.device_id, seq, [reading("spo2", 95 + seq % 3, "%", base + timedelta(seconds=10 * seq))])
        for seq in range(1, 41)
    ]
    for body in messages:
        assert device.publish(telemetry_topic(creds.device_id), body).value < 0x80
    assert wait_for(lambda: count_rows(db, patient) == 40, timeout=90)
    first = _rows(db, patient)
    # Replay: the device resends everything (e.g. after losing its acknowledgements).
    for body in messages:
        assert device.publish(telemetry_topic(creds.device_id), body).value < 0x80
    # A probe message published after the replay shows the replay has been processed.
    probe_ts = base + timedelta(minutes=20)
    assert device.send(41, [reading("spo2", 97, "%", probe_ts)]).value < 0x80
    assert wait_for(lambda: count_rows(db, patient) == 41, timeout=90)
    # The rows stored the first time are untouched (their receipt time included): the replay
    # was dropped, not written over them. (A count cannot tell: (patient, metric, ts) is unique.)
    assert [r for r in _rows(db, patient) if r[0] != probe_ts] == first
    device.close()


def test_a_device_cannot_publish_to_another_devices_topic(platform: Stack, db: psycopg.Connection) -> None:
    patient_a, patient_b = create_patient(db), create_patient(db)
    dev_a, dev_b = provision(platform, patient_a), provision(platform, patient_b)
    device = Device(platform, dev_a.username, dev_a.password)
    device.connect()
    ts = datetime.now(UTC) - timedelta(minutes=1)
    forged = payload(dev_b.device_id, 1, [reading("heart_rate", 180, "/min", ts)])
    rc = device.publish(telemetry_topic(dev_b.device_id), forged)
    assert rc.value >= 0x80
    assert rc.getName() == "Not authorized"
    # Its own topic still works, and only that reading arrives.
    assert device.send(1, [reading("heart_rate", 72, "/min", ts)]).value < 0x80
    assert wait_for(lambda: count_rows(db, patient_a) == 1, timeout=90)
    assert count_rows(db, patient_b) == 0
    device.close()


def test_wrong_password_is_refused_at_connect(platform: Stack, db: psycopg.Connection) -> None:
    creds = provision(platform, create_patient(db))
    device = Device(platform, creds.username, "not-the-password")
    rc = device.connect()
    device.close()
    assert rc.is_failure
