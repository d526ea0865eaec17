"""Helpers of the stream-processing tests: reading records produced straight to Kafka (the
bridge is tested elsewhere), detections read back from `rpm.detections.v1`, and ground truth
from the pure detectors."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from core.careplan import CarePlan, default_care_plan
from core.detectors.service import DetectorState, detect_readings
from core.wire import DETECTIONS, READINGS, DetectionRecord, Reading, ReadingBatch, detection_decoder, encode
from infra.stack import Stack, metric_value


def batch(
    patient_id: str,
    readings: Sequence[Reading],
    *,
    device_id: str = "dev-test",
    seq: int = 1,
    quarantined: bool = False,
    received_at: datetime | None = None,
) -> ReadingBatch:
    return ReadingBatch(
        patient_id=patient_id,
        device_id=device_id,
        seq=seq,
        received_at=received_at or datetime.now(UTC),
        readings=list(readings),
        quarantined=quarantined,
    )


def vitals(ts: datetime, *, hr: float = 72, spo2: float = 97, rr: float = 14, temp: float = 36.8) -> list[Reading]:
    """One wearable message: heart rate, SpO2, respiration rate and temperature."""
    return [
        Reading("heart_rate", hr, ts),
        Reading("spo2", spo2, ts),
        Reading("resp_rate", rr, ts),
        Reading("body_temp", temp, ts),
    ]


async def produce(bootstrap: str, items: Iterable[tuple[str, bytes | None]], topic: str = READINGS.name) -> int:
    """Produce (key, value) records, keyed like the bridge (patient id), acks=all; a None value
    is a tombstone."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key.encode()) for key, value in items]
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


def send_batches(bootstrap: str, batches: Iterable[ReadingBatch]) -> int:
    return asyncio.run(produce(bootstrap, [(b.patient_id, encode(b)) for b in batches]))


def read_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 30.0) -> list[tuple[bytes | None, bytes]]:
    """Every (key, value) of a topic, from the beginning to where it ends now.

    The end is where fetching brings nothing more: the embedded broker's ListOffsets(latest)
    answers the last record batch's base offset plus one, not the log end offset.
    """

    async def run() -> list[tuple[bytes | None, bytes]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            out: list[tuple[bytes | None, bytes]] = []
            deadline = time.monotonic() + timeout
            quiet = 0
            while quiet < 2 or not all([await consumer.position(tp) >= end[tp] for tp in tps]):
                assert time.monotonic() < deadline, f"could not read {topic} to its end"
                fetched = await consumer.getmany(timeout_ms=150, max_records=20000)
                quiet = 0 if fetched else quiet + 1
                for msgs in fetched.values():
                    out += [(m.key, m.value) for m in msgs]
            return out
        finally:
            await consumer.stop()

    return asyncio.run(run())


@dataclass
class DetectionLog:
    """Every record of `rpm.detections.v1` for some patients, read from the start of the topic."""

    bootstrap: str
    patients: set[str]
    records: list[DetectionRecord] = field(default_factory=list)

    def read(self) -> list[DetectionRecord]:
        """(Re)read the whole topic; returns this log's patients' records in topic order."""
        wanted = {p.encode() for p in self.patients}
        self.records = [
            detection_decoder.decode(value)
            for key, value in read_topic(self.bootstrap, DETECTIONS.name, DETECTIONS.partitions)
            if key in wanted
        ]
        return self.records

    def wait_for(
        self, predicate: Callable[[list[DetectionRecord]], bool], timeout: float = 60
    ) -> list[DetectionRecord]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                records = self.read()
            except KafkaError:
                # The embedded broker now and then answers ListOffsets late under load; the
                # next poll asks again (a real failure still ends at the deadline).
                if time.monotonic() > deadline:
                    raise
                records = self.records
            if predicate(records) or time.monotonic() > deadline:
                return records
            time.sleep(0.3)


def rules(records: Iterable[DetectionRecord], kind: str | None = None) -> list[str]:
    return [r.rule.value for r in records if kind is None or r.kind == kind]


def ground_truth(
    patient_id: str, records: Sequence[Sequence[Reading]], plan: CarePlan | None = None
) -> list[tuple[str, str, str]]:
    """(detection_id, rule, kind) the pure detectors give for these records, one at a time."""
    plan = plan or default_care_plan(patient_id)
    state = DetectorState()
    found: list[tuple[str, str, str]] = []
    for readings in records:
        state, detections = detect_readings(patient_id, plan, state, readings)
        found += [(d.detection_id, d.rule.value, d.kind.value) for d in detections]
    return found


def metric_samples(port: int, name: str) -> dict[str, float]:
    """Samples of one metric family from a Prometheus endpoint: label text -> value."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


def owned_partitions(port: int) -> set[int]:
    """The rpm.readings.v1 partitions a worker reports owning (empty when it cannot be reached)."""
    try:
        samples = metric_samples(port, "rpm_streams_assigned_partition")
    except httpx.HTTPError:
        return set()
    return {int(re.findall(r'partition="(\d+)"', k)[0]) for k, v in samples.items() if v == 1.0}


def minutes(t0: datetime, n: float) -> datetime:
    return t0 + timedelta(minutes=n)


def healthy_records(rng: np.random.Generator, t0: datetime, count: int, step_min: float = 5.0) -> list[list[Reading]]:
    """Wearable messages of a healthy adult: a personal heart rate with a daily rhythm and
    noise, 1 % movement artefacts (a single heart-rate spike), SpO2 around 97.5 %, respiration
    around 15 /min, temperature around 36.7 degC, values at device resolution."""
    base_hr = rng.normal(70, 6)
    out: list[list[Reading]] = []
    for i in range(count):
        ts = t0 + timedelta(minutes=step_min * i)
        rhythm = np.sin(2 * np.pi * i * step_min / (24 * 60))
        hr = base_hr + 4 * rhythm + rng.normal(0, 3) + (35 if rng.random() < 0.01 else 0)
        out.append(
            vitals(
                ts,
                hr=float(round(hr)),
                spo2=float(min(100, round(rng.normal(97.5, 0.8)))),
                rr=float(round(rng.normal(15, 1.2))),
                temp=round(float(rng.normal(36.7, 0.15) + 0.2 * rhythm), 1),
            )
        )
    return out


# --- worker processes of a test's own ----------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WorkerProcess:
    """A Faust worker started by a test, with its own settings."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    log_offset: int

    def log(self) -> str:
        """What the process wrote since it started."""
        with self.log_path.open("rb") as f:
            f.seek(self.log_offset)
            return f.read().decode("utf-8", "replace")

    def metric(self, name: str) -> float | None:
        try:
            return metric_value(self.port, name)
        except httpx.HTTPError:
            return None

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, then the exit code (SIGKILL if it does not stop in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


@contextlib.contextmanager
def own_worker(
    stack: Stack, env: dict[str, str] | None = None, *, replace_main: bool = False
) -> Iterator[WorkerProcess]:
    """A worker with extra settings: in place of the stack's own (same application id, metrics
    port and data; the stack's worker is started again afterwards), or beside it."""
    if replace_main:
        stack.stop(["streams"])
        name, port, data = "streams", stack.ports.streams_metrics, stack.state / "streams"
    else:
        port = free_port()
        name, data = f"streams-{port}", stack.state / f"streams-{port}"
    data.mkdir(exist_ok=True)
    log_path = stack.logs / f"{name}.log"
    offset = log_path.stat().st_size if log_path.exists() else 0
    proc = stack._python(
        name,
        "streams",
        extra_env={
            "RPM_DATABASE_URL": stack.db_url("streams"),
            "RPM_STREAMS_METRICS_PORT": str(port),
            "RPM_STREAMS_DATA_DIR": str(data),
            **(env or {}),
        },
    )
    worker = WorkerProcess(proc, port, log_path, offset)
    try:
        yield worker
    finally:
        worker.terminate()
        if replace_main:
            stack.stop(["streams"])  # forgets the pid file of the process above
            stack.start(["streams"])
        else:
            shutil.rmtree(data, ignore_errors=True)
