"""End-to-end benchmark of the pipeline (issue 13): MQTT publish -> bridge -> Kafka -> stream
worker -> TimescaleDB rows and detections -> alert service, on one machine.

Each run starts a fresh stack in the `make run` layout (Mosquitto, Tansu, TimescaleDB, SMTP, one
bridge, one stream worker with both roles, the alert service; no simulator) on free loopback
ports. `--devices` patients each get one wearable provisioned through the platform's own path,
with their own credentials. One publisher process (bench/ingest_throughput.py's: `core.clients.mqtt5`,
QoS 1, up to 1,000 messages in flight per device, packets encoded beforehand) sends a fixed
number of messages of 1 or 5 heart-rate readings each, either as fast as the broker takes them
or paced to a fixed offered rate. The readings are one second apart and end about now; every
device alternates 400 s above its care plan's limit (140/min) with 400 s at 70/min, so the
limits detector raises and clears episodes all through the run (detections to time).

Figures per run:
- readings/s stored: readings offered / (first publish -> the last of them committed in
  `observations`, by polling the worker's stored-readings counter every 0.2 s);
- rows stored against readings offered (a reading lost or stored twice shows here; the
  (patient_id, metric, ts) unique index rules out duplicates, so only a shortfall can show);
- detection latency: `produced_at - received_at` of every detection of the run's patients read
  back from `rpm.detections.v1` (receipt at the bridge -> detection published by the worker), and
  receipt -> the alert service's handling of it (its row in `alert_detections`);
- CPU seconds of each component over the run (user + system from /proc, PostgreSQL summed over
  all its processes), and per 10,000 readings: where the time goes.

Writes docs/benchmarks/end_to_end.md. No timing assertion anywhere: the machine is shared.

    PYTHONPATH=. .venv/bin/python bench/end_to_end.py [--devices 8] [--messages 100000]
        [--rates 2000,5000,10000] [--rate-seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import psycopg
from aiokafka import AIOKafkaConsumer

from bench.support import cpu_seconds
from core.wire import DETECTIONS, DetectionRecord
from infra.stack import Ports, Stack, metric_value
from tests.helpers import create_patient, provision

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "benchmarks" / "end_to_end.md"
PUBLISHER = ROOT / "bench" / "ingest_throughput.py"
EPISODE_S = 400  # seconds of readings above the limit, then as many at a normal rate
HIGH, NORMAL = 140, 70
LAYOUT = ("mosquitto", "kafka", "postgres", "smtp", "ingest", "streams", "alerts")
COMPONENTS = ("ingest", "streams", "alerts", "mosquitto", "kafka", "postgres", "publisher")


def tree_cpu_seconds(root: int | None) -> float:
    """CPU of a process and its live children (PostgreSQL's backends, checkpointer, ...)."""
    if root is None:
        return 0.0
    total = cpu_seconds(root)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == root:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def write_messages(path: Path, device_id: str, messages: int, per_message: int) -> None:
    """One JSON message per line, readings one second apart ending about now."""
    span = messages * per_message
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=span + 60)
    with path.open("w") as fh:
        for seq in range(1, messages + 1):
            readings = []
            for i in range(per_message):
                n = (seq - 1) * per_message + i
                value = HIGH if (n // EPISODE_S) % 2 == 0 else NORMAL
                ts = base + timedelta(seconds=n)
                readings.append({"metric": "heart_rate", "value": value, "unit": "/min", "ts": ts.isoformat()})
            sent = base + timedelta(seconds=(seq - 1) * per_message)
            body = {"schema": 1, "device_id": device_id, "seq": seq, "sent_at": sent.isoformat(), "readings": readings}
            fh.write(json.dumps(body, separators=(",", ":")) + "\n")


@dataclass
class Run:
    devices: int
    per_message: int
    rate: float  # offered messages/s, 0 = as fast as the broker takes them
    messages: int
    readings: int = 0
    stored: int = 0
    elapsed: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    detection_ms: list[float] = field(default_factory=list)
    alert_ms: list[float] = field(default_factory=list)
    load_before: float = 0.0
    timed_out: bool = False

    @property
    def stored_per_s(self) -> float:
        return self.stored / self.elapsed if self.elapsed else 0.0


def stored_metric(stack: Stack) -> float:
    """Readings the worker has inserted (its counter; the warm-up's included, hence the baseline)."""
    return metric_value(stack.ports.streams_metrics, "rpm_streams_stored_readings_total") or 0.0


def stored_count(db: psycopg.Connection, patients: list[str]) -> int:
    row = db.execute("SELECT count(*) FROM observations WHERE patient_id = ANY(%s)", (patients,)).fetchone()
    return int(row[0]) if row else 0


async def read_detections(bootstrap: str, patients: set[str], idle_s: float = 3.0) -> list[DetectionRecord]:
    """Every detection of these patients on the topic, from the beginning."""
    consumer = AIOKafkaConsumer(
        DETECTIONS.name, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[DetectionRecord] = []
    decoder = msgspec.json.Decoder(DetectionRecord)
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000), max_records=5000)
            if not batch:
                return out
            for records in batch.values():
                for rec in records:
                    if rec.value is None:
                        continue
                    det = decoder.decode(rec.value)
                    if det.patient_id in patients:
                        out.append(det)
    finally:
        await consumer.stop()


def alert_latencies(db: psycopg.Connection, detections: list[DetectionRecord]) -> list[float]:
    """Receipt of the reading -> the alert service's handling of the detection (the row it
    writes in `alert_detections` when it turns a detection into an alert change)."""
    timed = {d.detection_id: d.received_at for d in detections if d.received_at is not None}
    if not timed:
        return []
    rows = db.execute(
        "SELECT detection_id, received_at FROM alert_detections WHERE detection_id = ANY(%s)", (sorted(timed),)
    ).fetchall()
    return [(at - timed[det_id]).total_seconds() * 1000 for det_id, at in rows if timed.get(det_id) is not None]


def start_publisher(stack: Stack, manifest: Path, rate: float) -> subprocess.Popen[bytes]:
    """The publisher process of bench/ingest_throughput.py, connected and waiting for "go"."""
    publisher = subprocess.Popen(
        [
            sys.executable,
            str(PUBLISHER),
            "--publish",
            str(manifest),
            "--port",
            str(stack.ports.mqtt),
            "--rate",
            str(rate),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert publisher.stdout is not None
    if publisher.stdout.readline().strip() != b"ready":
        publisher.kill()
        raise RuntimeError("the publisher did not connect its devices")
    return publisher


def warm_up(stack: Stack, state: Path, messages: int = 200, timeout_s: float = 120.0) -> None:
    """One more device sends a few messages, and the run starts once they are stored: the worker
    has joined its consumer group and every process has opened its connections, so the
    measured run does not pay for start-up."""
    with psycopg.connect(stack.admin_db_url, autocommit=True) as db:
        patient = create_patient(db)
        creds = provision(stack, patient)
        path = state / "warm-up.jsonl"
        write_messages(path, creds.device_id, messages, 1)
        (state / "warm-up.json").write_text(json.dumps([(str(path), creds.username, creds.password)]))
        publisher = start_publisher(stack, state / "warm-up.json", 0.0)
        try:
            assert publisher.stdin is not None
            publisher.stdin.write(b"go\n")
            publisher.stdin.flush()
            deadline = time.monotonic() + timeout_s
            while stored_count(db, [patient]) < messages:
                if time.monotonic() > deadline:
                    raise RuntimeError("the warm-up readings were not stored in time")
                time.sleep(0.2)
            publisher.wait(timeout=30)
        finally:
            if publisher.poll() is None:
                publisher.kill()


def one_run(devices: int, messages: int, per_message: int, rate: float, timeout_s: float) -> Run:
    run = Run(devices=devices, per_message=per_message, rate=rate, messages=messages)
    state = Path(tempfile.mkdtemp(prefix="rpm-bench-e2e-"))
    state.chmod(0o755)
    stack = Stack(state, Ports.free(), quiet=True)
    publisher: subprocess.Popen[bytes] | None = None
    try:
        stack.start(LAYOUT)
        per_device = messages // devices
        run.messages = per_device * devices
        run.readings = run.messages * per_message
        manifest, patients = [], []
        with psycopg.connect(stack.admin_db_url, autocommit=True) as db:
            for _ in range(devices):
                pid = create_patient(db)
                patients.append(pid)
                creds = provision(stack, pid)
                path = state / f"{creds.device_id}.jsonl"
                write_messages(path, creds.device_id, per_device, per_message)
                manifest.append((str(path), creds.username, creds.password))
        (state / "manifest.json").write_text(json.dumps(manifest))
        warm_up(stack, state)
        publisher = start_publisher(stack, state / "manifest.json", rate)
        assert publisher.stdin is not None
        pids = {name: stack.pid(name) for name in COMPONENTS if name != "publisher"}
        pids["publisher"] = publisher.pid

        def cpu_now() -> dict[str, float]:
            return {
                name: tree_cpu_seconds(pid) if name == "postgres" else cpu_seconds(pid) for name, pid in pids.items()
            }

        with psycopg.connect(stack.admin_db_url, autocommit=True) as db:
            run.load_before = os.getloadavg()[0]
            # Progress is polled from the worker's own counter (a count over the run's patients
            # every 0.2 s would cost PostgreSQL more than the run does); the rows are counted once
            # at the end.
            stored_before = stored_metric(stack)
            cpu0 = cpu_now()
            started = time.monotonic()
            publisher.stdin.write(b"go\n")
            publisher.stdin.flush()
            deadline = started + timeout_s
            cpu1 = cpu0
            while True:
                run.stored = int(stored_metric(stack) - stored_before)
                now = time.monotonic()
                if run.stored >= run.readings or now > deadline:
                    run.elapsed = now - started
                    cpu1 = cpu_now()
                    run.timed_out = run.stored < run.readings
                    break
                time.sleep(0.2)
            run.cpu = {name: cpu1[name] - cpu0[name] for name in cpu1}
            publisher.wait(timeout=60)
            time.sleep(5)  # the last detections and alert events land
            detections = asyncio.run(read_detections(stack.kafka_bootstrap, set(patients)))
            run.detection_ms = [
                (d.produced_at - d.received_at).total_seconds() * 1000
                for d in detections
                if d.received_at is not None and d.produced_at is not None
            ]
            run.alert_ms = alert_latencies(db, detections)
            run.stored = stored_count(db, patients)
        return run
    finally:
        if publisher is not None and publisher.poll() is None:
            publisher.kill()
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)


def pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):,.0f} ms" if values else "-"


def results_table(runs: list[Run]) -> str:
    head = (
        "| devices | readings/msg | offered | messages | readings | stored | wall time | **readings/s stored** | "
        "detections | detection p50 / p99 | alert event p50 / p99 | load avg before |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in runs:
        offered = "as fast as possible" if r.rate == 0 else f"{r.rate * r.per_message:,.0f} readings/s"
        missing = r.readings - r.stored
        stored = f"{r.stored:,}" + ("" if missing == 0 else f" (**{missing:,} missing**)")
        lines.append(
            f"| {r.devices:,} | {r.per_message} | {offered} | {r.messages:,} | {r.readings:,} | {stored} | "
            f"{r.elapsed:.1f} s"
            f"{' (timed out)' if r.timed_out else ''} | **{r.stored_per_s:,.0f}** | {len(r.detection_ms)} | "
            f"{pct(r.detection_ms, 50)} / {pct(r.detection_ms, 99)} | {pct(r.alert_ms, 50)} / {pct(r.alert_ms, 99)} | "
            f"{r.load_before:.1f} |"
        )
    return "\n".join(lines)


def cpu_table(runs: list[Run]) -> str:
    head = "| run | " + " | ".join(COMPONENTS) + " | total |\n" + "|---" * (len(COMPONENTS) + 2) + "|"
    lines = [head]
    for r in runs:
        offered = ("max" if r.rate == 0 else f"{r.rate * r.per_message:,.0f}/s") + f", {r.devices:,} devices"
        per10k = {k: v / max(r.stored, 1) * 10_000 for k, v in r.cpu.items()}
        total = sum(per10k.values())
        cells = " | ".join(f"{per10k.get(c, 0):.2f} s ({100 * per10k.get(c, 0) / total:.0f} %)" for c in COMPONENTS)
        lines.append(f"| {r.per_message}/msg, {offered} | {cells} | {total:.2f} s |")
    return "\n".join(lines)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the stack on the way out
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--messages", type=int, default=100_000, help="messages of the as-fast-as-possible runs")
    parser.add_argument("--shapes", default="1,5", help="readings per message of the as-fast-as-possible runs")
    parser.add_argument("--rates", default="2000,5000,10000", help="offered readings/s of the paced runs (1/msg)")
    parser.add_argument("--rate-seconds", type=float, default=10.0, help="length of each paced run's publishing")
    parser.add_argument(
        "--spread",
        default="1000:10000",
        help="DEVICES:RATE, one more paced run (1/msg) spread over many devices; '' none",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="give up waiting for rows after this")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    runs: list[Run] = []
    for shape in (int(x) for x in args.shapes.split(",") if x):
        print(f"run: {shape} reading(s) per message, as fast as possible", flush=True)
        runs.append(one_run(args.devices, args.messages, shape, 0.0, args.timeout))
        print(results_table(runs[-1:]), flush=True)
    for rate in (float(x) for x in args.rates.split(",") if x):
        print(f"run: 1 reading per message at {rate:,.0f}/s", flush=True)
        runs.append(one_run(args.devices, int(rate * args.rate_seconds), 1, rate, args.timeout))
        print(results_table(runs[-1:]), flush=True)
    if args.spread:
        many, rate = (float(x) for x in args.spread.split(":"))
        print(f"run: 1 reading per message at {rate:,.0f}/s over {many:,.0f} devices", flush=True)
        runs.append(one_run(int(many), int(rate * args.rate_seconds), 1, rate, args.timeout))
        print(results_table(runs[-1:]), flush=True)

    shown = [a for i, a in enumerate(sys.argv[1:]) if a != "--out" and (i == 0 or sys.argv[i] != "--out")]
    command = "PYTHONPATH=. .venv/bin/python bench/end_to_end.py " + " ".join(shown)
    report = f"""# End-to-end benchmark

Run by `{command.strip()}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({os.cpu_count()} cores,
{platform.python_implementation()} {platform.python_version()}, loopback). Each run on a fresh stack in the
`make run` layout: Mosquitto, Tansu (Kafka protocol, memory storage), PostgreSQL 15 + TimescaleDB, one
bridge, one stream worker (both roles), the alert service; {args.devices} devices with their own
credentials (the spread run: as many as its devices column says); QoS 1 heart-rate readings one
second apart, alternating {EPISODE_S} s above the care plan's limit with {EPISODE_S} s at a normal rate
so that detections are raised and cleared all through.

## Throughput and latency

{results_table(runs)}

- readings/s stored: readings offered / (first publish -> the last one committed, polled every 0.2 s
  from the worker's `rpm_streams_stored_readings_total`).
  The paced runs offer a fixed rate for about {args.rate_seconds:g} s, so their readings/s stored is the
  offered rate when the pipeline keeps up and lower when it falls behind.
- stored: rows of the run's patients in `observations` at the end, against readings offered.
- detection: the worker's `produced_at - received_at` (bridge receipt -> detection published).
- alert event: bridge receipt -> the alert service's handling of that detection (its `alert_detections` row).
- load avg before: the machine's 1-minute load average as the run began (other work shows here).

## Where the time goes (CPU seconds per 10,000 readings stored)

{cpu_table(runs)}

CPU is user + system time from /proc over the run's wall time; PostgreSQL is summed over all its
processes. 2 cores give 2 CPU-seconds per second of wall time: a component whose share is near
the total of one core is the bottleneck of the layout.
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
