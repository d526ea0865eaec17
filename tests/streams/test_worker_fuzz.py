"""Fuzzing the real running worker: arbitrary bytes and mutated valid records written straight
to `rpm.readings.v1` and `rpm.care-plans.v1`, interleaved with valid readings in the same
partition. Every valid reading is stored exactly once, every invalid record becomes a dead
letter with a reason the operations guide lists, and the worker never stalls (the readings
after the garbage are stored, the care-plan agent still applies plans, the worker reports
ready and is the same process)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from core.careplan import default_care_plan, encode_care_plan
from core.dead_letters import payload_text
from core.wire import CARE_PLANS, READINGS, REJECTED, RejectedMessage, rejected_decoder
from infra.stack import Stack, metric_value
from streams.dead_letters import REASONS
from tests.helpers import wait_for
from tests.streams.support import batch, metric_samples, vitals

pytestmark = pytest.mark.slow

BAD_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\x80abc", b"\xf8\x88\x80\x80\x80"]
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


class Kafka:
    """A producer and a reader of the dead-letter topic, on an event loop of their own."""

    def __init__(self, bootstrap: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.letters: list[RejectedMessage] = []
        self.producer, self.consumer = self.loop.run_until_complete(self._start(bootstrap))

    async def _start(self, bootstrap: str) -> tuple[AIOKafkaProducer, AIOKafkaConsumer]:
        # Built inside the loop: aiokafka binds its clients to the running loop.
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await self.producer.start()
        await self.consumer.start()
        tps = [TopicPartition(REJECTED.name, p) for p in range(REJECTED.partitions)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        return self.producer, self.consumer

    def send(self, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
        async def run() -> None:
            futures = [await self.producer.send(topic, key=k, value=v) for k, v in records]
            await asyncio.gather(*futures)

        self.loop.run_until_complete(run())

    def read_letters(self) -> list[RejectedMessage]:
        async def run() -> None:
            fetched = await self.consumer.getmany(timeout_ms=200, max_records=10_000)
            for msgs in fetched.values():
                self.letters += [rejected_decoder.decode(m.value) for m in msgs if m.value is not None]

        self.loop.run_until_complete(run())
        return self.letters

    def close(self) -> None:
        self.loop.run_until_complete(self.producer.stop())
        self.loop.run_until_complete(self.consumer.stop())
        self.loop.close()


# --- invalid records --------------------------------------------------------------------------
def valid_record(patient_id: str, n: int) -> dict[str, Any]:
    ts = T0 + timedelta(seconds=n)
    return {
        "patient_id": patient_id,
        "device_id": f"dev-{patient_id}",
        "seq": n,
        "received_at": datetime.now(UTC).isoformat(),
        "readings": [["heart_rate", 70.0, ts.isoformat()], ["spo2", 97.0, ts.isoformat()]],
    }


def dumps(record: dict[str, Any]) -> bytes:
    return json.dumps(record).encode()


# Values of the wrong type for each field of a reading record.
WRONG_TYPES: dict[str, list[Any]] = {
    "patient_id": [None, 12, True, {"x": 1}, ["p"]],
    "device_id": [None, 12, False, {"x": 1}, ["d"]],
    "seq": [None, "12", 1.5, True, [1]],
    "received_at": [None, 12, True, {"x": 1}, "yesterday"],
    "readings": [None, 12, "x", {"x": 1}, [1], [["heart_rate"]], [["heart_rate", "72", "2026-01-01T00:00:00Z"]]],
}


@st.composite
def bad_reading_record(draw: st.DrawFn, patient_id: str) -> tuple[str, bytes]:
    """(kind, value): a reading record that is invalid in one way."""
    record = valid_record(patient_id, draw(st.integers(0, 10**6)))
    kind = draw(
        st.sampled_from(
            [
                "bytes",
                "invalid_utf8",
                "lone_surrogate",
                "deep_nesting",
                "huge_seq",
                "huge_value",
                "wrong_type",
                "naive_time",
                "nul_id",
                "truncated",
                "missing_field",
                "not_an_object",
            ]
        )
    )
    if kind == "bytes":
        return kind, draw(st.binary(max_size=400))
    if kind == "invalid_utf8":
        field_name = draw(st.sampled_from(["patient_id", "device_id", "received_at"]))
        marker = "@BAD@"
        record[field_name] = record[field_name] + marker
        return kind, dumps(record).replace(marker.encode(), draw(st.sampled_from(BAD_UTF8)))
    if kind == "lone_surrogate":
        field_name = draw(st.sampled_from(["patient_id", "device_id"]))
        record[field_name] += "@S@"
        return kind, dumps(record).replace(b"@S@", draw(st.sampled_from([b"\\ud800", b"\\udfff", b"\\ud83d"])))
    if kind == "deep_nesting":
        depth = draw(st.integers(2, 20_000))
        record["readings"] = "@N@"
        return kind, dumps(record).replace(b'"@N@"', b"[" * depth + b"]" * depth)
    if kind == "huge_seq":
        record["seq"] = draw(st.integers(2**63, 10**40) | st.integers(-(10**40), -(2**63) - 1))
        return kind, dumps(record)
    if kind == "huge_value":
        number = draw(st.sampled_from([b"1e400", b"-1e400", b"9" * 400]))
        record["readings"][0][1] = "@V@"
        return kind, dumps(record).replace(b'"@V@"', number)
    if kind == "wrong_type":
        field_name = draw(st.sampled_from(sorted(WRONG_TYPES)))
        record[field_name] = draw(st.sampled_from(WRONG_TYPES[field_name]))
        return kind, dumps(record)
    if kind == "naive_time":
        if draw(st.booleans()):
            record["received_at"] = datetime.now(UTC).replace(tzinfo=None).isoformat()
        else:
            record["readings"][0][2] = T0.replace(tzinfo=None).isoformat()
        return kind, dumps(record)
    if kind == "nul_id":
        record[draw(st.sampled_from(["patient_id", "device_id"]))] += "\u0000"
        return kind, dumps(record)
    if kind == "truncated":
        raw = dumps(record)
        return kind, raw[: draw(st.integers(0, len(raw) - 1))]
    if kind == "missing_field":
        del record[draw(st.sampled_from(["patient_id", "device_id", "seq", "received_at", "readings"]))]
        return kind, dumps(record)
    return kind, json.dumps(record["readings"]).encode()


@st.composite
def bad_care_plan(draw: st.DrawFn, patient_id: str) -> tuple[str, bytes | None, bytes]:
    """(kind, key, value): a care-plan record that is invalid in one way."""
    plan = json.loads(encode_care_plan(default_care_plan(patient_id)))
    # (A record without a key cannot be written to a compacted topic.)
    kind = draw(st.sampled_from(["bytes", "invalid_utf8", "wrong_type", "other_patient", "truncated"]))
    key: bytes | None = patient_id.encode()
    if kind == "bytes":
        value = draw(st.binary(max_size=400))
    elif kind == "invalid_utf8":
        plan["patient_id"] += "@BAD@"
        value = json.dumps(plan).encode().replace(b"@BAD@", draw(st.sampled_from(BAD_UTF8)))
    elif kind == "wrong_type":
        plan["patient_id"] = draw(st.sampled_from([None, 12, [], {"a": 1}]))
        value = json.dumps(plan).encode()
    elif kind == "other_patient":
        plan["patient_id"] = patient_id + "-other"
        value = json.dumps(plan).encode()
    else:
        raw = json.dumps(plan).encode()
        value = raw[: draw(st.integers(0, len(raw) - 1))]
    return kind, key, value


@dataclass
class Case:
    """One example: records in the order they are written (same key: same partition)."""

    good: list[bytes] = field(default_factory=list)
    readings: list[bytes] = field(default_factory=list)  # all, in order
    bad_readings: list[tuple[str, bytes]] = field(default_factory=list)
    bad_plans: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, Case]:
    tag = uuid.uuid4().hex[:10]
    good_patient, bad_patient = f"fz-ok-{tag}", f"fz-bad-{tag}"
    case = Case()
    for n in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):
            kind, value = draw(bad_reading_record(bad_patient))
            case.bad_readings.append((kind, value))
            case.readings.append(value)
        good = batch(good_patient, vitals(T0 + timedelta(minutes=n)), seq=n + 1)
        raw = json.dumps(
            {
                "patient_id": good.patient_id,
                "device_id": good.device_id,
                "seq": good.seq,
                "received_at": good.received_at.isoformat(),
                "readings": [[r.metric, r.value, r.ts.isoformat()] for r in good.readings],
            }
        ).encode()
        case.good.append(raw)
        case.readings.append(raw)
    for _ in range(draw(st.integers(0, 3))):
        case.bad_plans.append(draw(bad_care_plan(f"fz-plan-{tag}-{len(case.bad_plans)}")))
    return good_patient, case


def stored(stack: Stack, patient_id: str) -> tuple[int, int]:
    with psycopg.connect(stack.admin_db_url, connect_timeout=3) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (metric, ts)) FROM observations WHERE patient_id = %s", (patient_id,)
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@pytest.mark.timeout(900)
def test_garbage_on_the_worker_topics_is_dead_lettered_and_the_stream_goes_on(worker: Stack) -> None:
    pid = worker.pid("streams")
    kafka = Kafka(worker.kafka_bootstrap)
    kinds: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    counted = [0]  # dead letters already counted by reason
    try:

        @settings(
            max_examples=60,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(cases())
        def run(example_case: tuple[str, Case]) -> None:
            good_patient, case = example_case
            key = good_patient.encode()
            kafka.send(CARE_PLANS.name, [(k, v) for _, k, v in case.bad_plans])
            kafka.send(READINGS.name, [(key, v) for v in case.readings])
            expected = 4 * len(case.good)
            assert wait_for(lambda: stored(worker, good_patient) == (expected, expected), timeout=60), (
                f"valid readings not stored exactly once after garbage: {stored(worker, good_patient)} of {expected}"
            )
            owed = Counter(payload_text(v) for _, v in case.bad_readings)
            owed += Counter(payload_text(v) for _, _, v in case.bad_plans)

            def settled() -> bool:
                seen = Counter(d.payload for d in kafka.read_letters())
                return all(seen[p] >= n for p, n in owed.items())

            if not wait_for(settled, timeout=60):
                seen = {d.payload for d in kafka.letters}
                missing = [k for k, v in case.bad_readings if payload_text(v) not in seen]
                missing += [f"plan:{k}" for k, _, v in case.bad_plans if payload_text(v) not in seen]
                pytest.fail(f"invalid records without a dead letter: {missing}")
            ours = set(owed)
            for letter in kafka.letters[counted[0] :]:
                if letter.payload in ours:
                    assert letter.reason in REASONS, letter
                    assert letter.detail, letter
                    reasons[letter.reason] += 1
            counted[0] = len(kafka.letters)
            kinds.update(k for k, _ in case.bad_readings)
            kinds.update(f"plan:{k}" for k, _, _ in case.bad_plans)
            assert metric_value(worker.ports.streams_metrics, "rpm_streams_ready") == 1.0

        run()

        # The care-plan agent still applies plans after all that.
        applied = metric_samples(worker.ports.streams_metrics, "rpm_streams_care_plans_total").get(
            '{outcome="applied"}', 0.0
        )
        patient = f"fz-plan-ok-{uuid.uuid4().hex[:8]}"
        kafka.send(CARE_PLANS.name, [(patient.encode(), encode_care_plan(default_care_plan(patient)))])
        assert wait_for(
            lambda: (
                metric_samples(worker.ports.streams_metrics, "rpm_streams_care_plans_total").get(
                    '{outcome="applied"}', 0.0
                )
                > applied
            ),
            timeout=60,
        )
    finally:
        kafka.close()
    assert worker.pid("streams") == pid, "the worker restarted"
    assert metric_value(worker.ports.streams_metrics, "rpm_streams_ready") == 1.0
    print(f"\ninvalid records by kind: {dict(kinds)}\ndead letters by reason: {dict(reasons)}")
