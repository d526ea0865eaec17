"""The worker's device-events lane against the real broker and database: a battery event
updates the device's row, a late older one changes nothing, a record that is not a device
event becomes a dead letter and the lane goes on, an event of a device the platform does not
know changes nothing, and one sent during a database outage is applied once the database is
back; and, through the real bridge, a device's reported battery ends on its row.
The barrier's `internal_error` is tested without a broker (a bug cannot be sent over Kafka)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from core.wire import DEVICE_EVENTS, REJECTED, DeviceEvent, RejectedMessage, encode, rejected_decoder, telemetry_topic
from infra.stack import Stack, metric_value
from streams.dead_letters import DeadLetters
from streams.devices.agents import apply_one
from streams.devices.repository import BatteryOutcome, DeviceBatteries
from streams.devices.service import BatteryReport
from tests.helpers import Device, create_patient, payload, provision, reading, wait_for
from tests.streams.support import metric_samples, produce, read_topic

COUNTER = "rpm_streams_device_events_total"


def _device(db: psycopg.Connection) -> str:
    device_id = f"dev-{uuid.uuid4().hex[:10]}"
    db.execute("INSERT INTO devices (id, device_class) VALUES (%s, 'wearable')", (device_id,))
    return device_id


def _event(device_id: str, at: datetime, battery: float | None = None, kind: str = "battery") -> bytes:
    return encode(DeviceEvent(kind=kind, device_id=device_id, at=at, battery=battery))  # type: ignore[arg-type]


def _send(stack: Stack, values: list[bytes]) -> None:
    """Records in this order, one key: one partition, so the lane applies them in this order."""
    key = f"pt-{uuid.uuid4().hex[:8]}"
    asyncio.run(produce(stack.kafka_bootstrap, [(key, v) for v in values], topic=DEVICE_EVENTS.name))


def _battery(db: psycopg.Connection, device_id: str) -> tuple[float | None, datetime | None]:
    row = db.execute("SELECT battery, battery_at FROM devices WHERE id = %s", (device_id,)).fetchone()
    assert row is not None
    return row[0], row[1]


def _counted(stack: Stack, kind: str, outcome: str) -> float:
    samples = metric_samples(stack.ports.streams_metrics, COUNTER)
    return samples.get(f'{{kind="{kind}",outcome="{outcome}"}}', 0.0)


def _applied(db: psycopg.Connection, device_id: str, battery: float, timeout: float = 60) -> bool:
    return bool(wait_for(lambda: _battery(db, device_id)[0] == pytest.approx(battery), timeout=timeout))


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def test_a_battery_event_updates_the_device_row(worker: Stack, db: psycopg.Connection) -> None:
    device = _device(db)
    at = _now() - timedelta(minutes=1)
    before = _counted(worker, "battery", "applied")
    _send(worker, [_event(device, at, 0.42)])
    assert _applied(db, device, 0.42), _battery(db, device)
    assert _battery(db, device)[1] == at
    assert wait_for(lambda: _counted(worker, "battery", "applied") >= before + 1, timeout=10)


def test_an_older_event_after_a_newer_one_changes_nothing(worker: Stack, db: psycopg.Connection) -> None:
    device, sentinel = _device(db), _device(db)
    newer = _now() - timedelta(minutes=1)
    before = _counted(worker, "battery", "stale")
    _send(
        worker,
        [
            _event(device, newer, 0.8),
            _event(device, newer - timedelta(minutes=10), 0.3),  # late, older
            _event(device, newer, 0.1),  # the same time again (a replay): not newer either
            _event(sentinel, newer, 0.5),  # applied after both: they were handled
        ],
    )
    assert _applied(db, sentinel, 0.5)
    battery, battery_at = _battery(db, device)
    assert battery == pytest.approx(0.8)
    assert battery_at == newer
    assert wait_for(lambda: _counted(worker, "battery", "stale") >= before + 2, timeout=10)


def _letters_about(stack: Stack, payloads: set[str]) -> list[RejectedMessage]:
    letters = [rejected_decoder.decode(v) for _k, v in read_topic(stack.kafka_bootstrap, REJECTED.name, 2)]
    return [x for x in letters if x.payload in payloads]


def test_a_record_that_is_not_a_device_event_is_dead_lettered_and_the_next_event_applies(
    worker: Stack, db: psycopg.Connection
) -> None:
    device = _device(db)
    at = _now() - timedelta(minutes=1)
    garbage = f"not a device event {uuid.uuid4().hex}".encode()
    too_full = _event(device, at + timedelta(seconds=1), 1.5)
    from_the_future = _event(device, at + timedelta(days=300), 0.9)  # would freeze the battery for good
    before = _counted(worker, "unknown", "invalid")
    _send(worker, [garbage, too_full, from_the_future, _event(device, at, 0.6)])
    assert _applied(db, device, 0.6), _battery(db, device)
    wanted = {x.decode() for x in (garbage, too_full, from_the_future)}
    letters = wait_for(lambda: len(got := _letters_about(worker, wanted)) >= 3 and got, timeout=30)
    assert letters, "no dead letters for the invalid records"
    assert sorted((x.reason, x.topic) for x in letters) == [("invalid_device_event", DEVICE_EVENTS.name)] * 3
    by_payload = {x.payload: x.detail for x in letters}
    assert by_payload[garbage.decode()].startswith("not a device event")
    assert "between 0 and 1" in by_payload[too_full.decode()]
    assert "in the future" in by_payload[from_the_future.decode()]
    battery, battery_at = _battery(db, device)
    assert battery == pytest.approx(0.6)
    assert battery_at == at
    assert wait_for(lambda: _counted(worker, "unknown", "invalid") >= before + 1, timeout=10)
    # Readiness counts the topic: once the lane is through, nothing of it waits.
    assert wait_for(lambda: metric_value(worker.ports.streams_metrics, "rpm_streams_input_waiting") == 0.0, 30)


def test_an_event_of_an_unknown_device_changes_nothing_and_the_lane_goes_on(
    worker: Stack, db: psycopg.Connection
) -> None:
    device = _device(db)
    unknown = f"dev-{uuid.uuid4().hex[:10]}"
    at = _now() - timedelta(minutes=1)
    unknown_before = _counted(worker, "battery", "unknown_device")
    ignored_before = _counted(worker, "online", "ignored")
    _send(worker, [_event(unknown, at, 0.3), _event(device, at, kind="online"), _event(device, at, 0.7)])
    assert _applied(db, device, 0.7)
    assert db.execute("SELECT count(*) FROM devices WHERE id = %s", (unknown,)).fetchone() == (0,)
    assert wait_for(lambda: _counted(worker, "battery", "unknown_device") >= unknown_before + 1, timeout=10)
    assert wait_for(lambda: _counted(worker, "online", "ignored") >= ignored_before + 1, timeout=10)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_battery_event_sent_while_the_database_is_down_is_applied_once_it_is_back(
    worker: Stack, db: psycopg.Connection
) -> None:
    device = _device(db)
    at = _now() - timedelta(minutes=1)
    worker.stop(["postgres"])
    try:
        _send(worker, [_event(device, at, 0.25)])
        time.sleep(3)  # the lane tries, fails and waits (with backoff) meanwhile
        assert worker.pid("streams"), "the worker died during the outage"
    finally:
        worker.start(["postgres"])
    with psycopg.connect(worker.admin_db_url, autocommit=True) as conn:
        assert _applied(conn, device, 0.25, timeout=90), _battery(conn, device)


class _BrokenBatteries(DeviceBatteries):
    """Raises for one device, as a bug would; stores nothing."""

    def __init__(self) -> None:
        super().__init__("postgresql://unused")
        self.recorded: list[str] = []

    async def record(self, report: BatteryReport) -> BatteryOutcome:
        if report.device_id == "dev-broken":
            raise RuntimeError("device lane bug")
        self.recorded.append(report.device_id)
        return "applied"


def test_an_event_that_raises_is_an_internal_error_and_the_next_one_applies() -> None:
    sent: list[RejectedMessage] = []

    async def send(value: bytes) -> None:
        sent.append(rejected_decoder.decode(value))

    batteries = _BrokenBatteries()
    at = _now()
    outcomes = [
        asyncio.run(apply_one(_event(d, at, 0.5), batteries, DeadLetters(send))) for d in ("dev-broken", "dev-fine")
    ]
    assert outcomes == ["failed", "applied"]
    assert batteries.recorded == ["dev-fine"]
    assert [(x.reason, x.topic) for x in sent] == [("internal_error", DEVICE_EVENTS.name)]
    assert sent[0].detail == "device event: RuntimeError: device lane bug"


def test_a_battery_reported_by_a_device_ends_on_its_row(platform: Stack, db: psycopg.Connection) -> None:
    patient = create_patient(db)
    creds = provision(platform, patient)
    device = Device(platform, creds.username, creds.password)
    device.connect()
    try:
        ts = datetime.now(UTC) - timedelta(minutes=1)
        body = payload(creds.device_id, 1, [reading("heart_rate", 70, "/min", ts)], battery=0.42)
        assert device.publish(telemetry_topic(creds.device_id), body).value < 0x80
        assert _applied(db, creds.device_id, 0.42), _battery(db, creds.device_id)
        reported_at = _battery(db, creds.device_id)[1]
        assert reported_at is not None
        assert abs(reported_at - datetime.now(UTC)) < timedelta(minutes=2)
    finally:
        device.close()
