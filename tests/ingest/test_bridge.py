"""The bridge against the real broker, Kafka and database: every refused message reaches
the dead-letter topic with its reason, revoked devices are refused, and no reading is lost
when a bridge process is killed mid-stream."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer
from psycopg import AsyncConnection

from core.clients.provisioning import revoke_device
from core.wire import REJECTED, rejected_decoder, telemetry_topic
from infra.stack import Stack
from tests.helpers import Device, count_rows, create_patient, payload, provision, reading, wait_for


def read_topic(stack: Stack, topic: str, decode: Any, device_id: str, expected: int, timeout: float) -> list[Any]:
    """Read a topic from the start until `expected` records of the device are seen."""

    async def run() -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=stack.kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        found: list[Any] = []
        try:
            deadline = time.monotonic() + timeout
            while len(found) < expected and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for r in records:
                        # a readings record holds one batch or several patients' (ADR 0034); the
                        # topic is shared with other tests, whose hand-made records may not decode
                        try:
                            decoded = decode(r.value)
                        except (msgspec.DecodeError, TypeError):
                            continue
                        found += [
                            x for x in (decoded if isinstance(decoded, list) else [decoded]) if x.device_id == device_id
                        ]
        finally:
            await consumer.stop()
        return found

    return asyncio.run(run())


def dead_letters(stack: Stack, device_id: str, expected: int, timeout: float = 60) -> list[Any]:
    return read_topic(stack, REJECTED.name, rejected_decoder.decode, device_id, expected, timeout)


def ingest_metric(stack: Stack, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{stack.ports.ingest_metrics}/metrics", timeout=5).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_each_reject_reason_reaches_the_dead_letter_topic(platform: Stack, db: psycopg.Connection) -> None:
    patient = create_patient(db)
    creds = provision(platform, patient)
    device = Device(platform, creds.username, creds.password)
    device.connect()
    topic = telemetry_topic(creds.device_id)
    ts = datetime.now(UTC) - timedelta(minutes=1)
    cases = {
        "invalid_json": b"{this is not json",
        "schema_invalid": payload(creds.device_id, 1, [reading("heart_rate", "72", "/min", ts)]),
        "unsupported_schema": json.dumps({"schema": 9, "device_id": creds.device_id}).encode(),
        "device_mismatch": payload("someone-else", 2, [reading("heart_rate", 72, "/min", ts)]),
        "unknown_metric": payload(creds.device_id, 3, [reading("mood", 3, "1", ts)]),
        "unknown_unit": payload(creds.device_id, 4, [reading("heart_rate", 72, "beats", ts)]),
        "not_finite": payload(creds.device_id, 5, [reading("heart_rate", 72, "/min", ts)]).replace(b": 72", b": 1e999"),
        "implausible": payload(creds.device_id, 6, [reading("spo2", 30, "%", ts)]),
        "future_timestamp": payload(creds.device_id, 7, [reading("heart_rate", 72, "/min", ts + timedelta(hours=1))]),
        "missing_dose_id": payload(creds.device_id, 8, [reading("medication_taken", 1, "1", ts)]),
    }
    for body in cases.values():
        assert device.publish(topic, body).value < 0x80
    letters = dead_letters(platform, creds.device_id, len(cases))
    assert sorted(letter.reason for letter in letters) == sorted(cases)
    for letter in letters:
        assert letter.payload == cases[letter.reason].decode()[:4096]
        assert letter.detail
    device.close()
    assert count_rows(db, patient) == 0


def test_oversize_payload_is_refused_by_the_broker(platform: Stack, db: psycopg.Connection) -> None:
    patient = create_patient(db)
    creds = provision(platform, patient)
    device = Device(platform, creds.username, creds.password)
    disconnects: list[Any] = []
    device.client.on_disconnect = lambda _c, _u, _f, rc, _p: disconnects.append(rc)
    device.connect()
    ts = datetime.now(UTC) - timedelta(minutes=1)
    big = payload(creds.device_id, 1, [reading("heart_rate", 72, "/min", ts)], note="x" * 70_000)
    info = device.client.publish(telemetry_topic(creds.device_id), big, qos=1)
    # The broker refuses the packet: the device is disconnected with an MQTT 5 error reason
    # and never gets a success PUBACK for it.
    assert wait_for(lambda: disconnects, timeout=10)
    assert all(rc.value >= 0x80 for rc in disconnects)
    assert info.mid not in device.acks or device.acks[info.mid].value >= 0x80
    device.client.loop_stop()
    device.client.disconnect()
    # A probe from the same device after it: once the probe is stored, the refused message
    # would have been stored too, had it got through.
    probe = Device(platform, creds.username, creds.password)
    probe.connect()
    assert probe.send(2, [reading("heart_rate", 73, "/min", ts + timedelta(seconds=1))]).value < 0x80
    assert wait_for(lambda: count_rows(db, patient) >= 1, timeout=30)
    assert db.execute("SELECT seq FROM observations WHERE patient_id = %s", (patient,)).fetchall() == [(2,)]
    probe.close()


def test_no_consent_readings_are_rejected_and_counted(platform: Stack, db: psycopg.Connection) -> None:
    patient = create_patient(db, consent=False)
    creds = provision(platform, patient)
    before = ingest_metric(platform, 'rpm_ingest_rejected_total{reason="no_consent"}')
    device = Device(platform, creds.username, creds.password)
    device.connect()
    ts = datetime.now(UTC) - timedelta(minutes=1)
    assert device.send(1, [reading("heart_rate", 72, "/min", ts), reading("spo2", 97, "%", ts)]).value < 0x80
    letters = dead_letters(platform, creds.device_id, 2)
    assert [x.reason for x in letters] == ["no_consent", "no_consent"]
    assert wait_for(lambda: ingest_metric(platform, 'rpm_ingest_rejected_total{reason="no_consent"}') >= before + 2)
    device.close()
    assert count_rows(db, patient) == 0


def test_a_revoked_device_is_refused_at_once(platform: Stack, db: psycopg.Connection) -> None:
    patient = create_patient(db)
    creds = provision(platform, patient)
    device = Device(platform, creds.username, creds.password)
    assert not device.connect().is_failure

    async def revoke() -> None:
        async with await AsyncConnection.connect(platform.admin_db_url) as conn, conn.transaction():
            with platform.broker_admin() as admin:
                await revoke_device(conn, admin, creds.device_id)

    asyncio.run(revoke())
    # The broker disconnected it, and a new login is refused.
    assert wait_for(lambda: not device.client.is_connected(), timeout=10)
    device.close()
    again = Device(platform, creds.username, creds.password)
    assert again.connect().is_failure
    again.close()


@pytest.mark.slow
def test_kill_9_of_the_bridge_loses_nothing(platform: Stack, db: psycopg.Connection) -> None:
    patient = create_patient(db)
    creds = provision(platform, patient)
    device = Device(platform, creds.username, creds.password)
    device.connect()
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    total = 10_000
    infos = []
    for seq in range(1, total + 1):
        body = payload(
            creds.device_id, seq, [reading("heart_rate", 60 + seq % 40, "/min", base + timedelta(seconds=seq))]
        )
        infos.append(device.client.publish(telemetry_topic(creds.device_id), body, qos=1))
        if seq == 3_000:
            platform.kill("ingest")  # SIGKILL while messages are in flight
    platform.start(["ingest"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(device.acks) < total:
        time.sleep(0.2)
    assert len(device.acks) == total
    assert all(rc.value < 0x80 for rc in device.acks.values())
    assert wait_for(lambda: count_rows(db, patient) == total, timeout=120), count_rows(db, patient)
    # Each message's reading stored with its own seq and value (a count alone cannot tell a
    # reading stored under another message's seq; (patient, metric, ts) is unique).
    stored = db.execute(
        "SELECT seq, value, ts FROM observations WHERE patient_id = %s ORDER BY seq", (patient,)
    ).fetchall()
    assert stored == [(seq, 60 + seq % 40, base + timedelta(seconds=seq)) for seq in range(1, total + 1)]
    device.close()


def device_events(stack: Stack, device_id: str, expected: int, timeout: float = 30) -> list[Any]:
    from core.wire import DEVICE_EVENTS, device_event_decoder

    return read_topic(stack, DEVICE_EVENTS.name, device_event_decoder.decode, device_id, expected, timeout)


def test_status_battery_and_seq_gaps_become_device_events(platform: Stack, db: psycopg.Connection) -> None:
    from core.wire import commands_topic, status_topic

    patient = create_patient(db)
    creds = provision(platform, patient)
    device = Device(platform, creds.username, creds.password)
    commands: list[bytes] = []
    device.client.on_message = lambda _c, _u, msg: commands.append(msg.payload)
    device.connect()
    device.client.subscribe(commands_topic(creds.device_id), qos=1)
    time.sleep(0.5)
    assert device.publish(status_topic(creds.device_id), b"online").value < 0x80
    ts = datetime.now(UTC) - timedelta(minutes=2)
    body = payload(creds.device_id, 1, [reading("heart_rate", 70, "/min", ts)], battery=0.9)
    assert device.publish(telemetry_topic(creds.device_id), body).value < 0x80
    body = payload(creds.device_id, 5, [reading("heart_rate", 71, "/min", ts + timedelta(seconds=5))], battery=0.5)
    assert device.publish(telemetry_topic(creds.device_id), body).value < 0x80
    events = device_events(platform, creds.device_id, 4)
    kinds = [e.kind for e in events]
    assert kinds.count("online") == 1
    assert [e.battery for e in events if e.kind == "battery"] == [0.9, 0.5]
    gap = next(e for e in events if e.kind == "seq_gap")
    assert (gap.expected_seq, gap.got_seq, gap.patient_id) == (2, 5, patient)
    # The bridge asked the device to resend what it missed.
    assert wait_for(lambda: commands, timeout=10)
    assert json.loads(commands[0]) == {"command": "resend", "from_seq": 2}
    device.close()


def test_two_bridges_share_the_load(platform: Stack, db: psycopg.Connection) -> None:
    from infra.stack import Ports, metric_value

    extra_port = Ports.free().ingest_metrics
    second = platform._python(
        "ingest-2",
        "ingest",
        extra_env={
            "RPM_INGEST_METRICS_PORT": str(extra_port),
            "RPM_MQTT_CLIENT_ID": "rpm-ingest-second",
            "RPM_MQTT_LEAVE_ON_STOP": "true",
        },
    )
    try:
        platform._wait("ingest-2", second, lambda: metric_value(extra_port, "rpm_ingest_up") == 1.0, 30)
        patient = create_patient(db)
        creds = provision(platform, patient)
        device = Device(platform, creds.username, creds.password)
        device.connect()
        base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

        def send(seqs: range) -> None:
            for seq in seqs:
                device.client.publish(
                    telemetry_topic(creds.device_id),
                    payload(creds.device_id, seq, [reading("heart_rate", 70, "/min", base + timedelta(seconds=seq))]),
                    qos=1,
                )

        received = "rpm_ingest_received_messages_total"
        first_before = metric_value(platform.ports.ingest_metrics, received) or 0
        second_before = metric_value(extra_port, received) or 0
        send(range(1, 401))
        assert wait_for(lambda: count_rows(db, patient) == 400, timeout=60)
        # The shared subscription gave each bridge part of it. (Counts, not exact shares: a
        # broker shared with earlier tests may still hand over backlog of their sessions.)
        assert (metric_value(extra_port, received) or 0) > second_before
        assert (metric_value(platform.ports.ingest_metrics, received) or 0) > first_before

        # Scale down: the second bridge leaves the group on SIGTERM, so its share of what
        # comes next goes to the first one instead of waiting in an orphaned session.
        second.terminate()
        assert second.wait(timeout=20) == 0
        send(range(401, 601))
        assert wait_for(lambda: count_rows(db, patient) == 600, timeout=60), count_rows(db, patient)
        device.close()
    finally:
        if second.poll() is None:
            second.terminate()
            second.wait(timeout=20)


def test_a_burst_of_one_reading_messages_travels_in_fewer_records_with_each_seq_stored(
    platform: Stack, db: psycopg.Connection
) -> None:
    """ADR 0032: the readings of one device received in one bridge batch travel in one Kafka
    record; every reading is stored once, with the seq of the message that carried it."""
    from core.wire import READINGS, readings_record_decoder

    patient = create_patient(db)
    creds = provision(platform, patient)
    device = Device(platform, creds.username, creds.password)
    device.connect()
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    total = 300
    for seq in range(1, total + 1):
        body = payload(
            creds.device_id, seq, [reading("heart_rate", 60 + seq % 40, "/min", base + timedelta(seconds=seq))]
        )
        device.client.publish(telemetry_topic(creds.device_id), body, qos=1)
    assert wait_for(lambda: count_rows(db, patient) == total, timeout=60), count_rows(db, patient)
    rows = db.execute(
        "SELECT extract(epoch FROM ts - %s)::int, seq FROM observations WHERE patient_id = %s", (base, patient)
    ).fetchall()
    assert sorted(rows) == [(seq, seq) for seq in range(1, total + 1)]
    records = read_topic(platform, READINGS.name, readings_record_decoder.decode, creds.device_id, total, timeout=5)
    carried = sum(len(r.readings) for r in records)
    assert carried == total, "each reading in exactly one record"
    assert len(records) < total, "messages received together share a record"
    assert any(r.seqs is not None for r in records)
    device.close()
