"""The stream benchmark's load and workers (bench/streams_throughput.py): wearable messages of
a cohort (some patients turning hypoxic), produced as a backlog or at a steady rate with their
receipt time stamped as the bridge does; worker processes started with the roles asked for and
followed through their /metrics; the detections read back with their latency."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaProducer

from bench.support import free_port, scrape
from core.wire import DETECTIONS, READINGS, Reading, ReadingBatch, detection_decoder, encode
from infra.stack import Stack

ROOT = Path(__file__).resolve().parent.parent


# --- data ------------------------------------------------------------------------------------
def wearable(rng: np.random.Generator, patient: str, t0: datetime, minutes: int, hypoxic: bool) -> list[list[Reading]]:
    base = rng.normal(72, 6)
    out = []
    for i in range(minutes):
        ts = t0 + timedelta(minutes=i)
        low = hypoxic and minutes // 3 <= i < minutes // 3 + 15
        out.append(
            [
                Reading("heart_rate", float(round(base + rng.normal(0, 3))), ts),
                Reading("spo2", 86.0 if low else float(min(100, round(rng.normal(97.5, 0.8)))), ts),
                Reading("resp_rate", float(round(rng.normal(15, 1.2))), ts),
                Reading("body_temp", round(float(rng.normal(36.7, 0.15)), 1), ts),
            ]
        )
    return out


def cohort(patients: int, minutes: int, seed: int = 1) -> dict[str, list[list[Reading]]]:
    rng = np.random.default_rng(seed)
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=minutes)
    return {
        f"bench-{seed}-{p:05d}": wearable(rng, f"bench-{p}", t0, minutes, hypoxic=p % 20 == 0) for p in range(patients)
    }


def records_of(data: dict[str, list[list[Reading]]], received_at: datetime) -> list[ReadingBatch]:
    out = [
        ReadingBatch(patient_id=p, device_id=f"dev-{p}", seq=i + 1, received_at=received_at, readings=rs)
        for p, recs in data.items()
        for i, rs in enumerate(recs)
    ]
    out.sort(key=lambda b: (b.seq, b.patient_id))  # time order across patients, as devices send
    return out


async def produce(bootstrap: str, batches: list[ReadingBatch], *, stamp: bool = False) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=262144)
    await producer.start()
    started = time.monotonic()
    try:
        futures = []
        for b in batches:
            if stamp:
                b = ReadingBatch(b.patient_id, b.device_id, b.seq, datetime.now(UTC), b.readings)
            futures.append(await producer.send(READINGS.name, value=encode(b), key=b.patient_id.encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.monotonic() - started


async def paced(bootstrap: str, batches: list[ReadingBatch], per_second: float) -> None:
    """Produce at a steady rate, stamping each record's receipt time when it is sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    try:
        started = time.monotonic()
        futures = []
        tick = 0.02
        per_tick = max(1, round(per_second * tick))
        for n in range(0, len(batches), per_tick):
            now = datetime.now(UTC)
            for b in batches[n : n + per_tick]:
                stamped = ReadingBatch(b.patient_id, b.device_id, b.seq, now, b.readings)
                futures.append(await producer.send(READINGS.name, value=encode(stamped), key=b.patient_id.encode()))
            pause = started + (n // per_tick + 1) * tick - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


# --- worker processes ------------------------------------------------------------------------
def metrics(port: int) -> dict[str, float]:
    """The worker's `rpm_streams` samples (empty while it does not answer)."""
    return scrape(port, "rpm_streams")


def progress(m: dict[str, float]) -> tuple[float, float]:
    """(records stored, records judged) so far."""
    return m.get("rpm_streams_records_total", 0.0), m.get("rpm_streams_detection_records_total", 0.0)


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    port: int
    name: str
    roles: str = "store,detect"

    def done(self) -> float:
        """Records this worker has finished with, in all its roles."""
        stored, judged = progress(metrics(self.port))
        return min(x for role, x in (("store", stored), ("detect", judged)) if role in self.roles)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_worker(
    stack: Stack,
    roles: str,
    profile: Path | None = None,
    *,
    app_id: str | None = None,
    extra_env: dict[str, str] | None = None,
    wait: bool = True,
) -> Worker:
    port = free_port()
    name = f"bench-{roles.replace(',', '-')}-{uuid.uuid4().hex[:6]}"
    data = stack.state / name
    data.mkdir()
    env = {
        **os.environ,
        **stack.env("streams"),
        "RPM_STREAMS_ROLES": roles,
        "RPM_STREAMS_APP_ID": app_id or name,
        "RPM_STREAMS_METRICS_PORT": str(port),
        "RPM_STREAMS_DATA_DIR": str(data),
        "RPM_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    argv = [sys.executable]
    if profile is not None:
        argv += ["-m", "cProfile", "-o", str(profile)]
    argv += ["-m", "streams"]
    log = (stack.logs / f"{name}.log").open("ab")
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 180
    while wait and metrics(port).get("rpm_streams_up") != 1.0:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker {name} did not start; see {stack.logs / name}.log")
        time.sleep(0.5)
    return Worker(proc, port, name, roles)


def owned(port: int) -> set[int]:
    return {
        int(k.split('partition="')[1].split('"')[0])
        for k, v in metrics(port).items()
        if k.startswith("rpm_streams_assigned_partition{") and v == 1.0
    }


def read_detections(bootstrap: str, since: datetime) -> list[tuple[float, datetime]]:
    """(publication - receipt in seconds, receipt) of detections triggered by records received after `since`."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> list[tuple[float, datetime]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(DETECTIONS.name, p) for p in range(DETECTIONS.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            out: list[tuple[float, datetime]] = []
            quiet, seen = 0, False
            first_by = time.monotonic() + 20  # the first fetch waits for Tansu's (slow) offset lookups
            # The end: nothing more to fetch three times in a row (Tansu's end offsets are not reliable).
            while quiet < 3 or (not seen and time.monotonic() < first_by):
                fetched = await consumer.getmany(timeout_ms=300, max_records=50000)
                quiet = 0 if fetched else quiet + 1
                seen = seen or bool(fetched)
                for msgs in fetched.values():
                    for m in msgs:
                        d = detection_decoder.decode(m.value)
                        if d.received_at is not None and d.produced_at is not None and d.received_at >= since:
                            out.append(((d.produced_at - d.received_at).total_seconds(), d.received_at))
            return out
        finally:
            await consumer.stop()

    return asyncio.run(run())
