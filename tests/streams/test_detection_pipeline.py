"""The glue between Kafka records and the pure detectors, without a broker: grouping records
by patient, the stored-state envelope, care plans as the detectors see them, when the timer
may judge a partition, and what the pipeline does when a patient's readings are refused or
Kafka refuses its detections (in-memory stand-ins for the table and the topics; the same
pipeline runs through the real broker in test_detection_flow.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

import msgspec
import pytest
from aiokafka.partitioner import DefaultPartitioner

from core.careplan import CarePlan, default_care_plan, encode_care_plan
from core.detectors import news2
from core.detectors.model import DetectionKind, raise_detection
from core.detectors.service import DetectorState, observe_devices
from core.rules import Rule, Severity
from core.wire import DetectionRecord, Reading, default_partition, detection_decoder, encode, rejected_decoder
from streams.careplans.service import InvalidCarePlanError, PlanBook, validate_care_plan
from streams.dead_letters import DeadLetters
from streams.detection.pipeline import DetectionPipeline, group_records, partition_is_current, to_record
from streams.detection.state_store import StateStore, decode_stored, encode_stored, stored_partition
from streams.records import decode_record
from streams.settings import StreamsSettings
from tests.streams.support import batch, vitals

# Yesterday 06:00 UTC: the records are received now, and the worker refuses a reading taken
# more than MAX_READING_AGE before it was received (a fixed date would expire).
T0 = (datetime.now(UTC) - timedelta(days=1)).replace(hour=6, minute=0, second=0, microsecond=0)


def record(partition: int, offset: int, value: bytes) -> tuple[int, int, bytes]:
    return partition, offset, value


def acked() -> asyncio.Future[None]:
    """What a producer hands back for a record Kafka acknowledged."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    return fut


def test_records_are_grouped_per_patient_and_quarantined_ones_left_out() -> None:
    received = datetime.now(UTC)
    records = [
        record(0, 10, encode(batch("a", vitals(T0), device_id="w1", received_at=received))),
        record(3, 7, encode(batch("b", vitals(T0), device_id="w2"))),
        record(0, 11, encode(batch("a", [Reading("spo2", 88, T0 + timedelta(minutes=1))], device_id="ox1"))),
        record(3, 8, encode(batch("b", [Reading("spo2", 80, T0)], quarantined=True))),
        record(5, 1, b"not json"),
    ]
    grouped = group_records(records)
    assert (grouped.records, grouped.quarantined, grouped.undecodable) == (5, 1, 1)
    assert set(grouped.patients) == {"a", "b"}
    a = grouped.patients["a"]
    assert a.partition == 0
    assert len(a.readings) == 5
    assert {d: len(rs) for d, rs in a.by_device.items()} == {"w1": 4, "ox1": 1}
    assert a.received[T0] == received
    assert len(grouped.patients["b"].readings) == 4  # the quarantined batch never reaches detection
    assert grouped.progress[0][0] == 11
    assert grouped.progress[3][0] == 8


def test_a_record_of_several_patients_is_grouped_per_patient_each_with_its_own_source() -> None:
    received = datetime.now(UTC)
    a = batch("a", vitals(T0), device_id="w1", received_at=received)
    b = batch("b", [Reading("spo2", 97, T0)], device_id="ox2", received_at=received)
    q = batch("c", [Reading("spo2", 80, T0)], received_at=received, quarantined=True)
    grouped = group_records([record(2, 40, encode([a, b, q]))])
    assert (grouped.records, grouped.quarantined, grouped.undecodable) == (1, 0, 0)
    assert {p: (g.partition, len(g.readings)) for p, g in grouped.patients.items()} == {"a": (2, 4), "b": (2, 1)}
    # What a dead letter about one patient would carry: that patient's batch alone.
    (alone,) = grouped.patients["b"].sources
    assert decode_record(alone.value()) == decode_record(encode(b))
    assert grouped.progress[2] == (40, received)


def test_a_detection_record_carries_what_alerts_need_and_round_trips() -> None:
    d = raise_detection(
        "p1", Rule.SPO2_LOW, Severity.HIGH, at=T0, episode_start=T0 - timedelta(minutes=10), evidence={"value": 88}
    )
    rec = to_record(d, received_at=T0 + timedelta(seconds=1), produced_at=T0 + timedelta(seconds=2))
    back = detection_decoder.decode(encode(rec))
    assert back == rec
    assert (back.detection_id, back.rule, back.kind, back.clears) == (d.detection_id, Rule.SPO2_LOW, "raise", None)
    assert back.episode_start == T0 - timedelta(minutes=10)


def test_detection_record_refuses_naive_times() -> None:
    value = (
        encode(
            DetectionRecord(
                detection_id="x",
                patient_id="p",
                rule=Rule.SPO2_LOW,
                severity=Severity.HIGH,
                kind="raise",
                detected_at=T0,
                episode_start=T0,
                evidence={},
            )
        )
        .replace(b"+00:00", b"")
        .replace(b"Z", b"")
    )
    with pytest.raises(msgspec.ValidationError):
        detection_decoder.decode(value)


def test_stored_state_keeps_its_partition() -> None:
    state, _ = observe_devices("p1", DetectorState(), [("w1", "wearable", vitals(T0))])
    value = encode_stored(6, state)
    assert stored_partition(value) == 6
    assert decode_stored(value) == (6, state)


def test_state_store_saves_through_the_changelog_and_lists_owned_patients() -> None:
    data: dict[bytes, bytes] = {}
    sent: list[tuple[bytes, int]] = []

    async def send(key: bytes, value: bytes, partition: int) -> asyncio.Future[None]:
        sent.append((key, partition))
        return acked()

    async def save(patient: str, partition: int, state: DetectorState) -> None:
        await (await store.save(patient, partition, state))

    store = StateStore(data, send)
    state, _ = observe_devices("a", DetectorState(), [("w1", "wearable", vitals(T0))])
    asyncio.run(save("a", 2, state))
    asyncio.run(save("b", 5, DetectorState()))
    assert sent == [(b"a", 2), (b"b", 5)]
    assert store.get("a") == state
    assert store.get("nobody") == DetectorState()
    assert [(p, n) for p, n, _ in store.owned(frozenset({2}))] == [("a", 2)]
    # A value replaced under the store (changelog recovery) is decoded afresh.
    data[b"a"] = encode_stored(2, DetectorState())
    assert store.get("a") == DetectorState()


def test_plan_book_decodes_once_and_defaults_without_a_plan() -> None:
    plan = msgspec.structs.replace(default_care_plan("p1"), version=3, on_oxygen=True)
    table = {b"p1": encode_care_plan(plan)}
    book = PlanBook(table)
    assert book.plan_for("p1") == plan
    assert book.plan_for("p1") is book.plan_for("p1")
    assert book.plan_for("p2") == default_care_plan("p2")
    table[b"p1"] = encode_care_plan(msgspec.structs.replace(plan, version=4))
    assert book.plan_for("p1").version == 4


def test_care_plan_records_are_validated() -> None:
    good = encode_care_plan(default_care_plan("p1"))
    assert validate_care_plan(b"p1", good).patient_id == "p1"
    with pytest.raises(InvalidCarePlanError, match="under key"):
        validate_care_plan(b"p2", good)
    with pytest.raises(InvalidCarePlanError, match="without a key"):
        validate_care_plan(None, good)
    with pytest.raises(InvalidCarePlanError, match="does not validate"):
        validate_care_plan(b"p1", b'{"patient_id": "p1", "timezone": "Mars/Olympus"}')


def test_default_partition_is_kafkas_default_partitioner() -> None:
    for i in range(200):
        key = f"pt-{i}".encode()
        assert default_partition(key, 8) == DefaultPartitioner()(key, list(range(8)), list(range(8)))


@pytest.mark.parametrize(
    ("last", "highwater", "position", "current"),
    [
        ((9, 0), 10, None, True),  # processed up to the end
        ((5, 0), 10, None, True),  # behind, but the newest processed record is recent
        ((5, 600), 10, None, False),  # behind and the backlog is ten minutes old
        (None, 10, 10, True),  # nothing processed since assignment and nothing left to fetch
        (None, 10, 4, False),  # nothing processed yet, records waiting
        (None, None, None, False),  # nothing known yet
    ],
)
def test_timer_judges_only_partitions_it_has_caught_up_with(
    last: tuple[int, int] | None, highwater: int | None, position: int | None, current: bool
) -> None:
    now = datetime.now(UTC)
    seen = None if last is None else (last[0], now - timedelta(seconds=last[1]))
    assert partition_is_current(seen, highwater, position, now, timedelta(seconds=120)) is current


def test_roles_setting_is_checked() -> None:
    assert StreamsSettings(streams_roles="detect").roles == {"detect"}
    assert StreamsSettings().roles == {"store", "detect"}
    with pytest.raises(ValueError, match="streams_roles"):
        StreamsSettings(streams_roles="store,alert")


# --- the pipeline's failure handling, with in-memory stand-ins ----------------------------------
class Classes:
    async def classes_of(self, device_ids: Iterable[str]) -> dict[str, str]:
        return dict.fromkeys(device_ids, "wearable")


class RefusingPlans(PlanBook):
    """Fails for one patient, as a detector bug would."""

    def plan_for(self, patient_id: str) -> CarePlan:
        if patient_id == "broken":
            raise ValueError("detector bug")
        return super().plan_for(patient_id)


def hypoxic(patient_id: str) -> list[tuple[int, int, bytes]]:
    """Eleven minutes of SpO2 86 %: enough to raise spo2_low with the default plan."""
    return [
        record(1, i, encode(batch(patient_id, [Reading("spo2", 86, T0 + timedelta(minutes=i))], seq=i)))
        for i in range(12)
    ]


def pipeline(publish_fails: bool = False) -> tuple[DetectionPipeline, dict[bytes, bytes], list[bytes], list[bytes]]:
    data: dict[bytes, bytes] = {}
    published: list[bytes] = []
    dead: list[bytes] = []

    async def send_changelog(key: bytes, value: bytes, partition: int) -> asyncio.Future[None]:
        return acked()

    async def publish(key: bytes, value: bytes) -> asyncio.Future[None]:
        if publish_fails:
            raise ConnectionError("broker away")
        published.append(value)
        return acked()

    async def dead_letter(value: bytes) -> None:
        dead.append(value)

    p = DetectionPipeline(
        states=StateStore(data, send_changelog),
        plans=RefusingPlans({}),
        devices=Classes(),
        publish=publish,
        dead_letters=DeadLetters(dead_letter),
        retries=2,
    )
    return p, data, published, dead


def test_a_refused_patient_is_dead_lettered_and_the_others_detected() -> None:
    p, data, published, dead = pipeline()
    count = asyncio.run(p.process([*hypoxic("broken"), *hypoxic("fine")]))
    rules = [detection_decoder.decode(v).rule for v in published]
    assert Rule.SPO2_LOW in rules
    assert count == len(published)
    assert set(data) == {b"fine"}
    assert len(dead) == 12
    assert all(b"detection_refused" in v and b"detector bug" in v for v in dead)


def test_a_refused_record_costs_its_patient_only_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    # A detector bug that only one value meets: NEWS2 scoring raises on a heart rate of 233.
    real = news2.round_half_up

    def buggy(value: float, resolution: Decimal = Decimal(1)) -> Decimal:
        if value == 233:
            raise InvalidOperation("detector bug")
        return real(value, resolution)

    monkeypatch.setattr(news2, "round_half_up", buggy)
    p, data, published, dead = pipeline()
    records = hypoxic("p2")
    poison = batch("p2", [Reading("heart_rate", 233, T0 + timedelta(minutes=5, seconds=30))], seq=99)
    records.insert(6, record(1, 99, encode(poison)))
    count = asyncio.run(p.process(records))
    assert count == len(published) > 0
    assert Rule.SPO2_LOW in [detection_decoder.decode(v).rule for v in published]
    assert set(data) == {b"p2"}  # the state moved on with the other eleven records
    assert len(dead) == 1
    letter = rejected_decoder.decode(dead[0])
    assert letter.reason == "detection_refused"
    assert letter.payload == encode(poison).decode()


def test_detections_that_cannot_be_published_leave_the_state_unchanged() -> None:
    p, data, published, dead = pipeline(publish_fails=True)
    assert asyncio.run(p.process(hypoxic("p1"))) == 0
    assert published == []
    assert data == {}  # a replay will detect again
    assert len(dead) == 12
    assert all(b"detection_publish_failed" in v for v in dead)


def test_a_crash_between_the_detections_and_the_state_repeats_the_same_detections() -> None:
    """The window ADR 0008 allows: detections acknowledged, state not (the worker died). The
    next owner runs the batch again from the old state and publishes the same detections under
    the same ids, so a consumer that drops ids it has seen sees each detection once."""
    p, data, published, _ = pipeline()
    records = hypoxic("p1")

    async def lost(key: bytes, value: bytes, partition: int) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_exception(ConnectionError("worker killed before the state was acknowledged"))
        return fut

    p._states = StateStore(data, lost)  # the state's changelog record never arrives
    asyncio.run(p.process(records))
    first = [detection_decoder.decode(v) for v in published]
    assert first

    # The next owner rebuilds the table from the changelog, which has no state of p1.
    again, data_again, republished, _ = pipeline()
    asyncio.run(again.process(records))
    second = [detection_decoder.decode(v) for v in republished]
    assert [d.detection_id for d in second] == [d.detection_id for d in first]
    assert [(d.rule, d.kind, d.detected_at, d.episode_start) for d in second] == [
        (d.rule, d.kind, d.detected_at, d.episode_start) for d in first
    ]
    # Same ids, and distinct ones: a consumer that drops ids it has seen gets each detection once.
    assert len({d.detection_id for d in first}) == len(first)
    assert set(data_again) == {b"p1"}


def test_a_replayed_batch_publishes_nothing_twice() -> None:
    p, _, published, _ = pipeline()
    asyncio.run(p.process(hypoxic("p1")))
    first = [detection_decoder.decode(v).detection_id for v in published]
    assert first
    asyncio.run(p.process(hypoxic("p1")))
    assert [detection_decoder.decode(v).detection_id for v in published] == first


def test_timer_pass_reports_a_silent_wearable_once() -> None:
    p, _, published, _ = pipeline()
    asyncio.run(p.process(hypoxic("p1")))
    before = len(published)
    later = T0 + timedelta(minutes=50)
    asyncio.run(p.run_due(later, frozenset({1})))
    asyncio.run(p.run_due(later, frozenset({1})))
    new = [detection_decoder.decode(v) for v in published[before:]]
    assert [(d.rule, d.kind) for d in new] == [(Rule.DEVICE_SILENT_URGENT, DetectionKind.RAISE.value)]
    assert asyncio.run(p.run_due(later, frozenset({2}))) == 0  # not this worker's partition
