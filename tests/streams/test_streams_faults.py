"""Faults of the stream processing, through the real broker and database (slow):
- the database stopped for 60 s mid-stream: storage stalls, then every reading is stored once,
  and detection goes on meanwhile;
- the database refusing the worker's login (a grant revoked): storage waits, nothing is
  dead-lettered, and everything is stored once the grant is back;
- two workers sharing the partitions, one killed with -9 mid-stream of 50,000 readings: nothing
  lost, nothing stored twice, every detection of the ground truth published and nothing else; the
  survivor takes over, and the killed worker, restarted, recovers its tables from the changelog.

A detection may be published twice: a kill between a detection's ack and its state's ack makes
the next owner of the partition detect it again (ADR 0008). What the platform promises is that
the repeat carries the same id and the same content, so consumers drop it; that is asserted
here, and tested directly in test_detection_pipeline.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from core.wire import (
    READINGS,
    REJECTED,
    DetectionRecord,
    Reading,
    ReadingBatch,
    default_partition,
    encode,
    rejected_decoder,
)
from infra.stack import Stack, metric_value
from tests.helpers import wait_for
from tests.streams.support import (
    DetectionLog,
    batch,
    ground_truth,
    healthy_records,
    metric_samples,
    minutes,
    own_worker,
    owned_partitions,
    produce,
    read_topic,
    vitals,
)

pytestmark = pytest.mark.slow


def stored(stack: Stack, patients: list[str], what: str = "count(*)") -> int:
    """Rows of these patients (own connection: the database may have restarted)."""
    with psycopg.connect(stack.admin_db_url, connect_timeout=3) as conn:
        row = conn.execute(
            f"SELECT {what} FROM observations WHERE patient_id = ANY(%s)",  # noqa: S608 - fixed expressions
            (patients,),
        ).fetchone()
    return int(row[0]) if row else 0


def stored_readings(stack: Stack, patients: list[str]) -> list[tuple[str, str, datetime, float]]:
    """Every stored reading of these patients, sorted. Compared with what was sent: each reading
    stored once with its value (a count of distinct keys could not tell, (patient_id, metric, ts)
    being unique)."""
    with psycopg.connect(stack.admin_db_url, connect_timeout=3) as conn:
        rows = conn.execute(
            "SELECT patient_id, metric, ts, value FROM observations WHERE patient_id = ANY(%s)", (patients,)
        ).fetchall()
    return sorted((p, m, ts, round(v, 6)) for p, m, ts, v in rows)


def sent_readings(batches: list[ReadingBatch]) -> list[tuple[str, str, datetime, float]]:
    return sorted((b.patient_id, r.metric, r.ts, round(r.value, 6)) for b in batches for r in b.readings)


class PacedProducer(threading.Thread):
    """Produces records at a steady rate in the background (one asyncio producer per chunk)."""

    def __init__(self, bootstrap: str, records: list[ReadingBatch], seconds: float, chunks: int = 100) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.records, self.seconds, self.chunks = bootstrap, records, seconds, chunks
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            size = max(1, len(self.records) // self.chunks)
            start = time.monotonic()
            for n, i in enumerate(range(0, len(self.records), size)):
                chunk = self.records[i : i + size]
                # received_at as the bridge would stamp it, when the record is produced
                now = datetime.now(UTC)
                items = [(b.patient_id, encode(_stamped(b, now))) for b in chunk]
                self.sent += asyncio.run(produce(self.bootstrap, items))
                pause = start + (n + 1) * self.seconds / self.chunks - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
        except BaseException as exc:
            self.error = exc


def _stamped(b: ReadingBatch, received_at: datetime) -> ReadingBatch:
    return ReadingBatch(
        patient_id=b.patient_id, device_id=b.device_id, seq=b.seq, received_at=received_at, readings=b.readings
    )


def interleave(per_patient: dict[str, list[list[Reading]]]) -> list[ReadingBatch]:
    """All patients' records in time order, so each patient's stream spans the whole run."""
    out = [(i, p, rs) for p, records in per_patient.items() for i, rs in enumerate(records)]
    out.sort(key=lambda x: (x[0], x[1]))
    return [batch(p, rs, seq=i + 1, device_id=f"dev-{p}") for i, p, rs in out]


def dead_letters_of(stack: Stack, patients: set[str]) -> list[str]:
    """The worker's dead letters about these patients' readings. The alert service, when earlier
    modules left it running, dead-letters these made-up patients' detections (`unknown_patient`,
    topic rpm.detections.v1) whenever it gets to them: not the worker's doing, not counted."""
    out = []
    for _, value in read_topic(stack.kafka_bootstrap, REJECTED.name, REJECTED.partitions):
        d = rejected_decoder.decode(value)
        if d.topic == READINGS.name and any(p in d.payload for p in patients):
            out.append(d.reason)
    return out


def test_a_60_second_database_outage_stalls_storage_then_every_reading_is_stored_once(worker: Stack) -> None:
    rng = np.random.default_rng(60)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=4)
    patients = {f"outage-{uuid.uuid4().hex[:8]}": healthy_records(rng, t0, 240, step_min=1) for _ in range(20)}
    # One patient turns hypoxic: 20 min at 86 %, judged while the database is down.
    hypoxic = next(iter(patients))
    patients[hypoxic] = [vitals(rs[0].ts, spo2=86) if 120 <= i < 140 else rs for i, rs in enumerate(patients[hypoxic])]
    records = interleave(patients)
    total = sum(len(b.readings) for b in records)  # 19,200 readings in 4,800 records
    names = list(patients)
    log = DetectionLog(worker.kafka_bootstrap, {hypoxic})

    producer = PacedProducer(worker.kafka_bootstrap, records, seconds=75)
    producer.start()
    try:
        assert wait_for(lambda: stored(worker, names) > 0, timeout=30), "nothing stored before the outage"
        assert wait_for(lambda: producer.sent >= 0.1 * len(records), timeout=60), "the producer is stuck"
        worker.stop(["postgres"])
        before = producer.sent
        time.sleep(60)
        during = [r for r in log.read() if r.rule.value == "spo2_low"]
        with pytest.raises(psycopg.OperationalError):
            stored(worker, names)  # the database is still down at the end of the 60 s
    finally:
        worker.start(["postgres"])
    up_at = time.monotonic()
    producer.join(timeout=120)
    assert producer.error is None, producer.error
    assert producer.sent == len(records)
    assert producer.sent - before > 1000, "the outage was not mid-stream"

    assert wait_for(lambda: stored(worker, names) == total, timeout=120), (stored(worker, names), total)
    caught_up = time.monotonic() - up_at
    assert stored_readings(worker, names) == sent_readings(records)
    assert dead_letters_of(worker, set(names)) == []
    # Detection does not wait for the database (up to the stream buffer of the stalled agent).
    assert during, "no detection while the database was down"
    print(f"\ncaught up {caught_up:.1f} s after the database came back")


# --- two workers, one killed -------------------------------------------------------------------
def _scenario(t0: datetime, rng: np.random.Generator, count: int) -> list[list[Reading]]:
    """A patient who turns hypoxic from record 45 to the end (the episode starts before the kill
    at 40 % of the stream and is raised after it) and has a blood-pressure crisis whose repeat
    reading comes after the kill."""
    records = healthy_records(rng, t0, count, step_min=1)
    for i in range(45, count):
        records[i] = vitals(records[i][0].ts, spo2=86, hr=112)
    for i in (48, 52):
        bp = [Reading("bp_systolic", 186, minutes(t0, i)), Reading("bp_diastolic", 124, minutes(t0, i))]
        records[i] = [*records[i], *bp]
    return records


def _content(r: DetectionRecord) -> tuple[object, ...]:
    """What identifies a detection to its consumers (times of production and receipt differ
    between repeats)."""
    return (r.patient_id, r.rule, r.severity, r.kind, r.detected_at, r.episode_start, r.clears)


def _shared(port_a: int, port_b: int) -> bool:
    a, b = owned_partitions(port_a), owned_partitions(port_b)
    return bool(a) and bool(b) and not a & b and a | b == set(range(8))


@pytest.mark.timeout(420)
def test_kill_9_of_one_of_two_workers_loses_nothing_and_duplicates_nothing(worker: Stack) -> None:
    rng = np.random.default_rng(9)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    count = 125  # records per patient, 4 readings each: 100 patients -> 50,000 readings
    names = [f"kill-{uuid.uuid4().hex[:8]}" for _ in range(100)]
    per_patient = {p: healthy_records(rng, t0, count, step_min=1) for p in names}
    # Scenario patients on different partitions, so that both workers hold some.
    scenario: dict[int, str] = {}
    for p in names:
        scenario.setdefault(default_partition(p.encode(), 8), p)
    for p in scenario.values():
        per_patient[p] = _scenario(t0, rng, count)
    # Last records per scenario patient, sent after the killed worker is back: they end the
    # hypoxic episode, which needs the open episode recovered from the changelog.
    tail = {p: [vitals(minutes(t0, count + k), spo2=97) for k in range(12)] for p in scenario.values()}
    expected = {p: ground_truth(p, per_patient[p] + tail.get(p, [])) for p in names}
    expected_ids = {i for found in expected.values() for i, _, _ in found}
    assert sum(1 for found in expected.values() for _, r, k in found if (r, k) == ("spo2_low", "clear")) == len(
        scenario
    )
    records = interleave(per_patient)
    total = sum(len(b.readings) for b in records)
    assert total >= 50_000

    with own_worker(worker) as second:
        proc, port = second.proc, second.port
        assert wait_for(lambda: _shared(worker.ports.streams_metrics, port), timeout=120), "no shared partitions"
        # Kill the worker owning the first scenario patient's partition (its state must move).
        victim_partition = next(iter(scenario))
        kill_first = victim_partition in owned_partitions(worker.ports.streams_metrics)

        producer = PacedProducer(worker.kafka_bootstrap, records, seconds=25)
        producer.start()
        assert wait_for(lambda: producer.sent >= 0.4 * len(records), timeout=60)
        killed_at = time.monotonic()
        if kill_first:
            worker.kill("streams")
            survivor_port = port
        else:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            survivor_port = worker.ports.streams_metrics
        took_over = wait_for(lambda: owned_partitions(survivor_port) == set(range(8)), timeout=120)
        takeover_s = time.monotonic() - killed_at
        assert took_over, "the survivor did not take over the partitions"
        producer.join(timeout=120)
        assert producer.error is None, producer.error
        assert wait_for(lambda: stored(worker, names) == total, timeout=180), (stored(worker, names), total)
        caught_up_s = time.monotonic() - killed_at

        # Restart the killed worker: it rejoins, recovers its tables, and the tails are judged.
        if kill_first:
            worker.start(["streams"])
            rejoined = wait_for(lambda: owned_partitions(worker.ports.streams_metrics), timeout=120)
        else:
            rejoined = True
        assert rejoined
        tail_batches = [
            batch(p, rs, seq=1000 + k, device_id=f"dev-{p}") for p, recs in tail.items() for k, rs in enumerate(recs)
        ]
        asyncio.run(produce(worker.kafka_bootstrap, [(b.patient_id, encode(b)) for b in tail_batches]))

        log = DetectionLog(worker.kafka_bootstrap, set(names))
        log.wait_for(lambda rs: {r.detection_id for r in rs} >= expected_ids, timeout=120)
        # Everything the workers own is finished (no more detections can come), then read.
        ports = [worker.ports.streams_metrics] + ([port] if kill_first else [])
        assert wait_for(lambda: all(metric_value(p, "rpm_streams_input_waiting") == 0.0 for p in ports), timeout=60)
        got = log.read()

    got_ids = [r.detection_id for r in got]
    with_tail = total + sum(len(r) for t in tail.values() for r in t)
    assert len(sent_readings(records + tail_batches)) == with_tail
    assert stored_readings(worker, names) == sent_readings(records + tail_batches)
    missing = expected_ids - set(got_ids)
    extra = set(got_ids) - expected_ids
    assert not missing, f"{len(missing)} detections lost"
    assert not extra, f"{len(extra)} detections not in the ground truth"
    # A repeat (kill between a detection's ack and its state's ack) is the same detection.
    first: dict[str, DetectionRecord] = {}
    for r in got:
        seen = first.setdefault(r.detection_id, r)
        assert _content(seen) == _content(r), f"detection {r.detection_id} published twice with other content"
    repeats = len(got_ids) - len(set(got_ids))
    print(
        f"\nkilled {'streams' if kill_first else 'streams2'}: takeover {takeover_s:.1f} s, "
        f"all stored {caught_up_s:.1f} s after the kill; {len(set(got_ids))} detections, "
        f"{repeats} repeated with the same id and content"
    )
    assert metric_value(worker.ports.streams_metrics, "rpm_streams_up") == 1.0


def _refusals(stack: Stack) -> float:
    """Storage attempts the database refused for lack of a grant (core.retry counts each retry)."""
    samples = metric_samples(stack.ports.streams_metrics, "rpm_retries_total")
    return sum(v for labels, v in samples.items() if "InsufficientPrivilege" in labels)


def test_a_database_that_refuses_the_worker_stalls_storage_instead_of_dead_lettering(
    worker: Stack, db: psycopg.Connection
) -> None:
    patient = f"grant-{uuid.uuid4().hex[:8]}"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    before = _refusals(worker)
    db.execute("REVOKE INSERT ON observations FROM rpm_streams")
    try:
        asyncio.run(
            produce(
                worker.kafka_bootstrap,
                [(patient, encode(batch(patient, vitals(minutes(t0, i)), seq=i))) for i in range(10)],
            )
        )
        assert wait_for(lambda: _refusals(worker) >= before + 2, timeout=60), "storage was not refused"
        assert stored(worker, [patient]) == 0
    finally:
        db.execute("GRANT INSERT ON observations TO rpm_streams")
    assert wait_for(lambda: stored(worker, [patient]) == 40, timeout=60), stored(worker, [patient])
    assert dead_letters_of(worker, {patient}) == []
