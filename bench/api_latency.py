"""Benchmark of the clinician API's reads and of the live inbox (issue 11): patient summary and
inbox latency on a database holding 30 days of readings for 1,000 patients while ingest runs,
and the time from a detection's publication to its server-sent event.

A whole stack (Mosquitto, Tansu, TimescaleDB, SMTP, ingest, streams, alerts, api) is started by
infra.stack.Stack on free ports in a temporary directory. The patients and their wearables are
provisioned through the platform's own path (devices.simulator.provisioning); clinicians and
care teams (one team of `--team-size` patients per clinician) and a history of alerts (some
hundreds open) are written with SQL; the readings are COPY'd into `observations`: heart rate,
SpO2, respiration and temperature every `--interval-minutes`, weight and blood pressure daily.

While the simulator publishes through the real bridge at `--ingest-rate` readings/s, each read
is timed `--requests` times, one request at a time, a random clinician (bearer token from
POST /api/v1/auth/token) and a random patient of their team per request. The summary route is
measured whenever /openapi.json lists it. Then one clinician's stream (GET /api/v1/alerts/stream)
is open while detections for their patients are produced to `rpm.detections.v1` at a steady
rate; latency = publication -> the event carrying the detection's id read from the stream.
Writes docs/benchmarks/api.md.

    PYTHONPATH=. .venv/bin/python bench/api_latency.py [--patients 1000] [--days 30]
        [--interval-minutes 15] [--requests 1000] [--ingest-rate 1000] [--detections 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
from aiokafka import AIOKafkaProducer

from bench.api_seed import PASSWORD, SSE_RULE, Clinician, Seeded, seed
from bench.support import temporary_stack
from core.wire import DETECTIONS, DetectionRecord, encode
from infra.stack import Stack

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "benchmarks" / "api.md"
SUMMARY_PATH = "/api/v1/patients/{patient_id}/summary"
# The 1-minute load average at the start of each measured phase (other work on the machine shows here).
LOADS: list[float] = []
QUIET_LOADS: list[float] = []
TARGETS_MS = {"inbox": 100.0, "summary": 50.0, "sse": 1000.0}


# --- measuring -----------------------------------------------------------------------------------
@dataclass
class Timing:
    name: str
    what: str
    target_ms: float | None
    seconds: list[float] = field(default_factory=list)
    errors: dict[int, int] = field(default_factory=dict)

    def pct(self, q: float) -> float:
        return float(np.percentile(self.seconds, q)) * 1000 if self.seconds else float("nan")


async def log_in(http: httpx.AsyncClient, clinicians: list[Clinician]) -> None:
    """A fresh access token per clinician (they live 15 minutes)."""
    for c in clinicians:
        answer = await http.post("/api/v1/auth/token", data={"username": c.username, "password": PASSWORD})
        answer.raise_for_status()
        c.token = answer.json()["access_token"]


Request = Callable[[Clinician, str], tuple[str, dict[str, Any], dict[str, str]]]


async def time_reads(
    http: httpx.AsyncClient, clinicians: list[Clinician], timing: Timing, make: Request, n: int, warmup: int = 20
) -> None:
    rng = random.Random(timing.name)  # noqa: S311 - sampling requests, not a secret
    await log_in(http, clinicians)
    for k in range(warmup + n):
        c = rng.choice(clinicians)
        path, params, headers = make(c, rng.choice(c.patients))
        started = time.perf_counter()
        answer = await http.get(path, params=params, headers=headers)
        await answer.aread()
        took = time.perf_counter() - started
        if k < warmup:
            continue
        if answer.status_code == 200:
            timing.seconds.append(took)
        else:
            timing.errors[answer.status_code] = timing.errors.get(answer.status_code, 0) + 1


def bearer(c: Clinician) -> dict[str, str]:
    return {"Authorization": f"Bearer {c.token}"}


def reads(summary: bool) -> list[tuple[Timing, Request]]:
    out: list[tuple[Timing, Request]] = [
        (
            Timing("inbox", "GET /api/v1/alerts (first page, 50 unresolved, most severe first)", TARGETS_MS["inbox"]),
            lambda c, p: ("/api/v1/alerts", {}, bearer(c)),
        ),
        (
            Timing(
                "inbox-filtered",
                "GET /api/v1/alerts?severity=high&severity=critical&sort=age",
                TARGETS_MS["inbox"],
            ),
            lambda c, p: ("/api/v1/alerts", {"severity": ["high", "critical"], "sort": "age"}, bearer(c)),
        ),
    ]
    if summary:
        out.append(
            (
                Timing("summary", "GET /api/v1/patients/{id}/summary", TARGETS_MS["summary"]),
                lambda c, p: (f"/api/v1/patients/{p}/summary", {}, bearer(c)),
            )
        )
    out += [
        (
            Timing("observations", "GET /api/v1/patients/{id}/observations?metric=heart_rate (last 24 h)", None),
            lambda c, p: (f"/api/v1/patients/{p}/observations", {"metric": "heart_rate"}, bearer(c)),
        ),
        (
            Timing("page", "GET /patients/{id} (the patient's HTML page, session cookie)", None),
            lambda c, p: (f"/patients/{p}", {}, {"Cookie": f"rpm_session={c.token}"}),
        ),
    ]
    return out


@dataclass
class StreamRun:
    seconds: list[float] = field(default_factory=list)
    sent: int = 0
    missing: int = 0
    rate: float = 0.0


async def stream_latency(stack: Stack, base: str, clinician: Clinician, n: int, rate: float) -> StreamRun:
    """Detections for the clinician's patients at a steady rate (a raise, later its clear, per
    patient); each one's publication -> its event on the clinician's open stream."""
    run = StreamRun(rate=rate)
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(30, read=None)) as http:
            await log_in(http, [clinician])
            headers = {**bearer(clinician), "Accept": "text/event-stream"}
            async with http.stream("GET", "/api/v1/alerts/stream", headers=headers) as response:
                response.raise_for_status()
                ready, everything = asyncio.Event(), asyncio.Event()

                async def read() -> None:
                    async for line in response.aiter_lines():
                        if line.startswith(": connected") or line.startswith(":connected"):
                            ready.set()
                        if line.startswith("data:"):
                            detail = json.loads(line[5:]).get("detail") or {}
                            did = detail.get("detection_id")
                            if did in sent and did not in got:
                                got[did] = time.perf_counter()
                                if len(got) == n:
                                    everything.set()

                reader = asyncio.create_task(read())
                await asyncio.wait_for(ready.wait(), 30)
                raises: dict[str, str] = {}
                futures = []
                started = time.perf_counter()
                for k in range(n):
                    patient = clinician.patients[k % len(clinician.patients)]
                    now = datetime.now(UTC)
                    did = str(uuid.uuid4())
                    clears = raises.pop(patient, None)
                    record = DetectionRecord(
                        detection_id=did,
                        patient_id=patient,
                        rule=SSE_RULE,
                        severity="high",  # type: ignore[arg-type]
                        kind="clear" if clears else "raise",
                        detected_at=now,
                        episode_start=now,
                        evidence={"value": 320, "threshold": 250},
                        clears=clears,
                        produced_at=now,
                    )
                    if clears is None:
                        raises[patient] = did
                    sent[did] = time.perf_counter()
                    futures.append(await producer.send(DETECTIONS.name, value=encode(record), key=patient.encode()))
                    pause = started + (k + 1) / rate - time.perf_counter()
                    if pause > 0:
                        await asyncio.sleep(pause)
                await asyncio.gather(*futures)
                with contextlib.suppress(TimeoutError):  # what is still missing is counted as not received
                    await asyncio.wait_for(everything.wait(), 30)
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
    finally:
        await producer.stop()
    run.sent = len(sent)
    run.seconds = [got[d] - sent[d] for d in sent if d in got]
    run.missing = len(sent) - len(got)
    return run


def wait_for_ingest(stack: Stack, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    since = datetime.now(UTC)
    while stored_between(stack, since, datetime.now(UTC) + timedelta(minutes=1)) == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("no simulator reading was stored; see the ingest and streams logs")
        time.sleep(2)


def stored_between(stack: Stack, start: datetime, end: datetime) -> int:
    with psycopg.connect(stack.admin_db_url) as db:
        row = db.execute(
            "SELECT count(*) FROM observations WHERE ts >= %s AND received_at >= %s AND received_at < %s",
            (start - timedelta(hours=1), start, end),
        ).fetchone()
    return int(row[0]) if row else 0


async def measure_quiet(stack: Stack, seeded: Seeded, args: argparse.Namespace, summary: bool) -> list[Timing]:
    """The target reads again with the simulator stopped: what ingest's share of the CPU costs them."""
    base = f"http://127.0.0.1:{stack.ports.api}"
    timings = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for timing, make in reads(summary):
            if timing.target_ms is None and summary:
                continue
            QUIET_LOADS.append(os.getloadavg()[0])
            print(f"  timing {timing.name} x {args.requests}, no ingest", flush=True)
            await time_reads(http, seeded.clinicians, timing, make, args.requests)
            timings.append(timing)
    return timings


async def measure(stack: Stack, seeded: Seeded, args: argparse.Namespace) -> dict[str, Any]:
    base = f"http://127.0.0.1:{stack.ports.api}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        paths = (await http.get("/openapi.json")).json().get("paths", {})
        summary = SUMMARY_PATH in paths
        timings = []
        for timing, make in reads(summary):
            LOADS.append(os.getloadavg()[0])
            print(f"  timing {timing.name} x {args.requests}", flush=True)
            await time_reads(http, seeded.clinicians, timing, make, args.requests)
            timings.append(timing)
    LOADS.append(os.getloadavg()[0])
    print(f"  stream: {args.detections} detections at {args.detection_rate:g}/s", flush=True)
    stream = await stream_latency(stack, base, seeded.clinicians[0], args.detections, args.detection_rate)
    return {"timings": timings, "stream": stream, "summary_route": summary}


# --- report --------------------------------------------------------------------------------------
def ms(value: float) -> str:
    return "-" if value != value else f"{value:.1f} ms"


def verdict(p99: float, target: float | None) -> str:
    if target is None:
        return "(no target)"
    return f"< {target:.0f} ms: **{'met' if p99 < target else 'NOT met'}**"


def write_report(args: argparse.Namespace, seeded: Seeded, result: dict[str, Any], load: dict[str, Any]) -> None:
    timings: list[Timing] = result["timings"]
    stream: StreamRun = result["stream"]
    rows = []
    for t in timings:
        errors = ", ".join(f"{n} x {code}" for code, n in sorted(t.errors.items())) or "0"
        rows.append(
            f"| {t.what} | {len(t.seconds):,} | {errors} | {ms(t.pct(50))} | {ms(t.pct(95))} | **{ms(t.pct(99))}** "
            f"| {ms(max(t.seconds) * 1000 if t.seconds else float('nan'))} | {verdict(t.pct(99), t.target_ms)} |"
        )
    quiet_rows = [
        f"| {t.what} | {len(t.seconds):,} | {sum(t.errors.values()):,} | {ms(t.pct(50))} | {ms(t.pct(95))} "
        f"| **{ms(t.pct(99))}** | {ms(max(t.seconds) * 1000 if t.seconds else float('nan'))} "
        f"| {verdict(t.pct(99), t.target_ms)} |"
        for t in result.get("quiet", [])
    ]
    quiet_section = (
        f"""
### The same reads without ingest

The simulator stopped (10 s for the bridge and the worker to finish), the rest of the stack still
running; {args.quiet_requests:,} timed requests per row, as above. Load average at the start of
each phase: {", ".join(f"{x:.1f}" for x in QUIET_LOADS)}.

| read | requests (200) | other answers | p50 | p95 | p99 | max | target (p99) |
|---|---|---|---|---|---|---|---|
{chr(10).join(quiet_rows)}
"""
        if quiet_rows
        else ""
    )
    s = np.array(stream.seconds) * 1000
    if len(s):
        sse_row = (
            f"| {stream.sent:,} | {stream.missing:,} | {np.percentile(s, 50):.0f} ms | {np.percentile(s, 95):.0f} ms "
            f"| **{np.percentile(s, 99):.0f} ms** | {s.max():.0f} ms | {verdict(float(np.percentile(s, 99)), 1000)} |"
        )
    else:
        sse_row = f"| {stream.sent:,} | {stream.missing:,} | - | - | - | - | no event received |"
    summary_note = (
        "The patient summary route was in /openapi.json and is measured above."
        if result["summary_route"]
        else "**The patient summary route (`GET /api/v1/patients/{id}/summary`) was not in /openapi.json when this "
        "ran**, so the summary target is not measured yet; the patient's observations (24 h of one metric) and "
        "the patient's HTML page stand in for it. The script measures the summary whenever the route exists: "
        "run it again to fill it in."
    )
    density = (
        f"heart rate, SpO2, respiration and body temperature every {args.interval_minutes} min "
        f"({4 * 24 * 60 // args.interval_minutes} rows a patient-day), weight, systolic and diastolic blood "
        "pressure once a day"
    )
    report = f"""# Clinician API latency benchmark

Run by `bench/api_latency.py` on {load["date"]} ({os.cpu_count()} cores, Python {platform.python_version()},
loopback; PostgreSQL 15 + TimescaleDB, Tansu, Mosquitto, and every platform process, the simulator and the
benchmark's client all on this one machine). Targets from issue 11: patient summary p99 < 50 ms and inbox
p99 < 100 ms on a database holding 30 days of readings for 1,000 patients while ingest runs; detection to
SSE event p99 < 1 s.

## Data

- **{args.patients:,} patients** with one provisioned wearable each (patients, consent, devices, bindings and
  broker credentials through the simulator's provisioning path, {seeded.provision_s:.0f} s);
  {len(seeded.clinicians)} clinician(s), each the only member of a care team of {args.team_size} patients.
- **{seeded.rows:,} observations** over {args.days} days ({density}), COPY'd into the `observations`
  hypertable in **{seeded.seed_s:.0f} s** (with ANALYZE); table and indexes {seeded.table_bytes / 2**30:.2f} GiB.
- Alerts: **{seeded.open_alerts:,} open** (one per patient and rule, random severity, opened in the last
  3 days) and {seeded.resolved_alerts:,} resolved over the {args.days} days, each with its history row.

## Load during the measurement

The device simulator (`python -m devices.simulator run --rate {args.ingest_rate:g}`, the {args.patients:,}
wearables, each its own MQTT connection) published through Mosquitto, the ingest bridge, Kafka and the
stream worker (storage and detection) for the whole measurement: **{load["ingest_rate"]:,.0f} readings/s
stored** on average over the {load["seconds"]:.0f} s of measurement (observations received in that time).
Load average (1 min) before the stack started: {load["load_before"]:.2f}; at the start of each measured
phase: {", ".join(f"{x:.1f}" for x in LOADS)}; at the end: {load["load_after"]:.2f} (2 cores).

## Reads

{args.requests:,} timed requests per row after 20 unmeasured ones, one at a time over one keep-alive
connection, each as a random clinician (their own bearer token) about a random patient of their team
(the inbox rows: the clinician's whole inbox, {seeded.open_alerts / max(1, len(seeded.clinicians)):.0f} open
alerts a team on average). Time = request sent -> whole body read, at the client. Every read is an audited
read (an `audit_events` row each).

| read | requests (200) | other answers | p50 | p95 | p99 | max | target (p99) |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

{summary_note}
{quiet_section}
## Detection to server-sent event

One clinician's stream (`GET /api/v1/alerts/stream`, bearer token) open while {stream.sent:,} detections of
rule `{SSE_RULE.value}` for that clinician's {args.team_size} patients are produced to `rpm.detections.v1`
at {stream.rate:g}/s (per patient a raise, then its clear: each opens or resolves an alert). Latency =
the benchmark handing the record to its Kafka producer -> the benchmark reading the event whose
`detail.detection_id` is that detection from the stream: the alert service's consumption and transaction,
PostgreSQL's NOTIFY, the API's listener, the scope check and the HTTP chunk.

| detections | not received (30 s) | p50 | p95 | p99 | max | target (p99) |
|---|---|---|---|---|---|---|
{sse_row}

## Reading the figures

- The machine has 2 cores and everything shares them: broker, database, the ingest bridge, the stream
  worker, the alert service, the API, the simulator and the client. Other work on the machine (other
  sessions' test suites, with brokers and databases of their own) may run at the same time; the load
  averages above say how busy it was (a load of 2 already fills both cores). Latencies at the tail (p99,
  max) move most with that; repeat the run before reading much into a difference of a few milliseconds.
- The client sends one request at a time, so these are latencies of single reads under ingest load, not
  of many clinicians at once.
- The ingest load is {args.ingest_rate:,.0f} readings/s: each of the {args.patients:,} wearables sends its 4 vitals
  every {4 * args.patients / args.ingest_rate:.0f} s, far more than a real cohort of that size would
  (one set a minute is {4 * args.patients / 60:,.0f} readings/s). It is not the platform's 10,000
  readings/s aim: at that rate the stream worker alone takes most of a core (docs/benchmarks/streams.md)
  and the API's share of the two cores would be what is measured.
- The patient summary is the heaviest of these reads: latest value of each vital over 7 days with its
  24-hour hourly trend, NEWS2, unresolved alerts, 7-day adherence, 24-hour completeness and the devices:
  the access check, then six reads sent together in one pipeline round trip (patient and plan, latest
  values, hourly trends, alerts, devices with their hours of data, adherence readings), then the audit
  row. The patient's HTML page renders the same picture and more, server-side.
- Density: one set of wearable vitals every {args.interval_minutes} min over {args.days} days; a wearable
  reporting every minute for 30 days would be 15 times the rows per patient and was not tried.
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report + load.get("notes", ""))
    print(report)
    print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--interval-minutes", type=int, default=15, help="wearable vitals every this many minutes")
    parser.add_argument("--team-size", type=int, default=50, help="patients per clinician (one care team each)")
    parser.add_argument("--open-alerts", type=int, default=400)
    parser.add_argument("--resolved-alerts", type=int, default=3000)
    parser.add_argument("--requests", type=int, default=1000, help="timed requests per read")
    parser.add_argument("--ingest-rate", type=float, default=1000.0, help="simulator readings/s during the reads")
    parser.add_argument("--detections", type=int, default=300)
    parser.add_argument("--detection-rate", type=float, default=5.0, help="detections/s in the stream run")
    parser.add_argument(
        "--quiet-requests", type=int, default=1000, help="timed requests per target read with ingest stopped (0: skip)"
    )
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the report")
    parser.add_argument("--keep", action="store_true", help="keep the temporary state dir (logs) afterwards")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    with temporary_stack("rpm-bench-api-", ["mosquitto", "kafka", "postgres"], keep=args.keep) as stack:
        print(f"stack in {stack.state}", flush=True)
        seeded = seed(stack, args)
        stack.start(["smtp", "ingest", "streams", "alerts", "api"])
        stack.start_simulator(stack.state / "devices.json", "--rate", str(args.ingest_rate), "--no-progress")
        wait_for_ingest(stack)
        time.sleep(5)
        began = datetime.now(UTC)
        result = asyncio.run(measure(stack, seeded, args))
        ended = datetime.now(UTC)
        seconds = (ended - began).total_seconds()
        load = {
            "date": f"{began:%Y-%m-%d %H:%M} UTC",
            "seconds": seconds,
            "ingest_rate": stored_between(stack, began, ended) / seconds,
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
        }
        if args.quiet_requests:
            stack.stop(["simulator"])
            time.sleep(10)  # the bridge and the worker finish what was in flight
            quiet_args = argparse.Namespace(**{**vars(args), "requests": args.quiet_requests})
            result["quiet"] = asyncio.run(measure_quiet(stack, seeded, quiet_args, result["summary_route"]))
        write_report(args, seeded, result, load)


if __name__ == "__main__":
    main()
