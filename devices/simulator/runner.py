"""Running a simulation: one asyncio worker per process (connect the devices, generate on
time, commit, publish, answer commands, stop cleanly on SIGTERM), and `--workers N`
spreading the patients over N processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from core.clients import mqtt5 as mqtt
from devices.simulator.config import ConfigError, Roster, RunOptions
from devices.simulator.device import Entry, Fleet
from devices.simulator.engine import Engine
from devices.simulator.groundtruth import GroundTruth, cut_back, worker_path
from devices.simulator.outbox import Checkpoint, Outbox
from devices.simulator.scenarios import ScenarioError
from devices.simulator.schedule import iso

TICK_S: Final = 0.02
PRUNE_EVERY_S: Final = 10.0
REPORT_EVERY_S: Final = 0.5

Reporter = Callable[[dict[str, Any]], None]


class SimulatorError(RuntimeError):
    """The run cannot go on (broker unreachable, every login refused); says why."""


def queue_path(opts: RunOptions, worker: int, workers: int) -> Path:
    name = "outbox.sqlite3" if workers <= 1 else f"outbox-w{worker}of{workers}.sqlite3"
    return opts.queue_dir / name


def run_fingerprint(opts: RunOptions, roster: Roster, worker: int, workers: int) -> str:
    """What must be the same for a restarted simulator to resume an unfinished run."""
    devices = hashlib.sha256("\n".join(f"{d.device_id}:{d.patient_id}" for d in roster.devices).encode())
    body = {
        "seed": opts.seed,
        "speed": opts.speed,
        "rate": opts.rate,
        "interval": opts.interval,
        "scenarios": opts.scenarios,
        "worker": worker,
        "workers": workers,
        "devices": devices.hexdigest(),
        "ground_truth": str(opts.ground_truth) if opts.ground_truth else None,
    }
    return json.dumps(body, sort_keys=True)


def _resume_point(outbox: Outbox, opts: RunOptions, fingerprint: str) -> Checkpoint | None:
    checkpoint = outbox.resumable(fingerprint)
    if checkpoint is None or (opts.start_explicit and abs(checkpoint.start - opts.start) > 1e-3):
        return None
    return checkpoint


def _stats(engine: Engine, fleet: Fleet | None, started: float, offset: float) -> dict[str, Any]:
    stats: dict[str, Any] = dict(fleet.stats.as_dict()) if fleet is not None else {}
    stats.update(
        generated=engine.generated,
        generated_readings=engine.generated_readings,
        devices=len(engine.devices),
        elapsed=time.monotonic() - (engine.generating_since or started),
        sim_time=engine.clock.sim(offset),
    )
    if fleet is None:  # dry run: nothing to acknowledge
        stats.update(acked=engine.generated, acked_readings=engine.generated_readings, queued=0)
    return stats


async def _connect_all(fleet: Fleet, engine: Engine, seconds: float, opts: RunOptions, stop: asyncio.Event) -> None:
    """Start every link (except devices offline or dead when a run resumes); wait until all
    are up (or refused), `seconds` passed or stop is set."""
    links = [
        link for link in fleet.links if not (engine.devices[link.index].offline or engine.devices[link.index].dead)
    ]
    if not links:
        return
    for link in links:
        link.start()
    deadline = fleet.now() + seconds
    while fleet.now() < deadline and not stop.is_set():
        settled = sum(1 for link in links if link.online or link.refused is not None)
        if settled == len(links):
            break
        await asyncio.sleep(0.05)
    online = fleet.stats.connected
    if online == 0 and not stop.is_set():
        where = f"{opts.mqtt_host}:{opts.mqtt_port}"
        if fleet.refused:
            code = next(iter(fleet.refused.values()))
            raise SimulatorError(
                f"the MQTT broker at {where} refused the login of all {len(fleet.refused)} device(s) "
                f"({mqtt.reason_name(code)}): are they provisioned (`rpm sim provision`) and is the "
                f"credentials file current? e.g. {', '.join(list(fleet.refused)[:3])}"
            )
        raise SimulatorError(
            f"MQTT broker {where} unreachable: {fleet.last_connect_error or 'no answer'} "
            f"(after {seconds:.0f} s; check --mqtt-host/--mqtt-port or RPM_MQTT_HOST/RPM_MQTT_PORT)"
        )


async def run_worker(
    opts: RunOptions,
    roster: Roster,
    worker: int = 0,
    workers: int = 1,
    *,
    stop: asyncio.Event | None = None,
    report: Reporter | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run one worker until `--duration` passed or `stop` is set; returns the final stats."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    gt_path = worker_path(opts.ground_truth, worker, workers) if opts.ground_truth else None
    fleet: Fleet | None = None
    outbox: Outbox | None = None
    engine: Engine | None = None
    started = time.monotonic()
    try:
        resume: Checkpoint | None = None
        fingerprint = run_fingerprint(opts, roster, worker, workers)
        if not opts.dry_run:
            outbox = Outbox(queue_path(opts, worker, workers), keep_acked=opts.keep_acked)
            resume = _resume_point(outbox, opts, fingerprint)
            if resume is not None and resume.upto < 0:  # killed before generating anything
                if gt_path is not None:
                    cut_back(gt_path, resume.gt_pos)
                resume = None
            if resume is not None:
                # Same clock as the interrupted run; drop the ground truth written after
                # its last checkpoint (it is generated again, identically).
                opts = dataclasses.replace(opts, start=resume.start, wall0=resume.wall0)
                if gt_path is not None:
                    cut_back(gt_path, resume.gt_pos)
        engine = Engine(opts, roster, worker, workers)
        engine.gt = GroundTruth(gt_path)
        if outbox is not None:
            engine.outbox = outbox
            fleet = Fleet(
                opts.mqtt_host, opts.mqtt_port, outbox, engine.gt, window=opts.window, keepalive=opts.keepalive
            )
            _attach_links(engine, fleet, roster, outbox)
        if resume is not None:
            engine.resume(resume.upto)
            engine.gt.record(
                "resume",
                worker=worker,
                offset_s=resume.upto,
                sim_time=iso(engine.clock.sim(resume.upto)),
                offline=[d.info.device_id for d in engine.devices.values() if d.offline],
            )
            engine.gt.flush()
        else:
            before_header = engine.gt.position()
            engine.write_header()
            engine.gt.flush()
            if outbox is not None:
                outbox.begin_run(fingerprint, opts.start, opts.wall0, before_header)
        if opts.dry_run:
            _dry_run(engine, opts.duration)
            return _stats(engine, None, started, opts.duration)
        assert fleet is not None
        assert outbox is not None
        connecting = time.monotonic()
        await _connect_all(fleet, engine, opts.connect_timeout, opts, stop)
        connect_seconds = time.monotonic() - connecting
        if fleet.refused and warn is not None:
            warn(
                f"{len(fleet.refused)} device(s) could not log in "
                f"({mqtt.reason_name(next(iter(fleet.refused.values())))}), e.g. "
                f"{', '.join(list(fleet.refused)[:3])}; retrying every minute"
            )
        fleet.spawn(fleet.keepalive_loop(), name="keepalive", job=False)
        watch_failure = asyncio.ensure_future(_stop_on_failure(fleet, stop))
        try:
            offset = await _generate(engine, fleet, outbox, opts, stop, loop, report, started)
        finally:
            watch_failure.cancel()
        if fleet.failure is not None:
            raise SimulatorError(f"simulator stopped: {fleet.failure}")
        engine.flush()
        generation = _stats(engine, fleet, started, offset)
        await fleet.drain(opts.drain_timeout)
        outbox.commit()
        final = _stats(engine, fleet, started, offset)
        # What was acknowledged while generating (before the final drain): the sustained rate.
        final.update(
            connect_seconds=connect_seconds,
            generation_seconds=offset,
            acked_in_window=generation["acked"],
            acked_readings_in_window=generation["acked_readings"],
        )
        engine.gt.record(
            "summary",
            worker=worker,
            stats=final,
            devices={
                link.device_id: {
                    "last_seq": engine.devices[link.index].next_seq - 1,
                    "acked_upto": link.acked_upto,
                    "pending": link.pending,
                }
                for link in fleet.links
            },
        )
        engine.gt.flush()
        outbox.finish_run()
        return final
    finally:
        if fleet is not None:
            await fleet.shutdown()
        if outbox is not None:
            outbox.close()
        if engine is not None:
            engine.gt.close()


async def _stop_on_failure(fleet: Fleet, stop: asyncio.Event) -> None:
    await fleet.failed.wait()
    stop.set()


def _attach_links(engine: Engine, fleet: Fleet, roster: Roster, outbox: Outbox) -> None:
    ids = [dev.info.device_id for dev in engine.devices.values()]
    backlogs = outbox.load(ids, memory_cap=2000)
    for g, dev in engine.devices.items():
        entry = roster.devices[g]
        link = fleet.add(g, entry.device_id, entry.password)
        dev.link = link
        backlog = backlogs[entry.device_id]
        dev.next_seq = backlog.next_seq
        for seq, payload in backlog.pending:
            link.queue.append(Entry(seq, payload, payload.count(b'"metric":')))
        link.spilled = backlog.more_pending
        link.acked_upto = backlog.pending[0][0] - 1 if backlog.pending else backlog.next_seq - 1
        link.pending = outbox.count_pending(entry.device_id) if backlog.more_pending else len(backlog.pending)
        fleet.stats.queued += link.pending


def _dry_run(engine: Engine, duration: float) -> None:
    """Generate `duration` wall seconds worth of messages as fast as possible (no broker)."""
    if duration <= 0:
        raise SimulatorError("--dry-run needs --duration > 0")
    offset = 0.0
    while offset < duration:
        offset = min(duration, offset + 1.0)
        engine.generate_until(offset)
        engine.flush()


async def _generate(
    engine: Engine,
    fleet: Fleet,
    outbox: Outbox,
    opts: RunOptions,
    stop: asyncio.Event,
    loop: asyncio.AbstractEventLoop,
    report: Reporter | None,
    started: float,
) -> float:
    # A resumed run goes on from its checkpoint (offsets are seconds of the run's own clock).
    base = max(engine.upto, 0.0)
    t0 = loop.time() - base
    engine.generating_since = time.monotonic()
    next_prune, next_report = t0 + base + PRUNE_EVERY_S, t0 + base
    offset = base
    while not stop.is_set():
        now = loop.time()
        offset = now - t0
        if opts.duration and offset >= opts.duration:
            offset = opts.duration
            engine.generate_until(offset)
            break
        engine.generate_until(offset)
        engine.flush()
        if now >= next_prune:
            next_prune = now + PRUNE_EVERY_S
            outbox.prune(fleet.acked_upto())
        if report is not None and now >= next_report:
            next_report = now + REPORT_EVERY_S
            report(_stats(engine, fleet, started, offset))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK_S)
    return offset


def install_stop_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


# --- several processes --------------------------------------------------------------------------
def _child(
    opts: RunOptions, roster: Roster, worker: int, workers: int, conn: multiprocessing.connection.Connection
) -> None:
    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        install_stop_handlers(stop)
        return await run_worker(
            opts,
            roster,
            worker,
            workers,
            stop=stop,
            report=lambda s: conn.send(("stats", worker, s)),
            warn=lambda m: conn.send(("warn", worker, m)),
        )

    try:
        final = asyncio.run(main())
        conn.send(("done", worker, final))
    except (SimulatorError, ScenarioError, ConfigError) as exc:
        conn.send(("error", worker, str(exc)))
        raise SystemExit(2) from exc


def run_processes(
    opts: RunOptions, roster: Roster, report: Reporter | None, warn: Callable[[str], None]
) -> dict[str, Any]:
    """Run `opts.workers` worker processes; SIGTERM/SIGINT stop them all. Returns summed stats."""
    ctx = multiprocessing.get_context("spawn")
    pipes, procs = [], []
    for w in range(opts.workers):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(opts, roster, w, opts.workers, child), name=f"sim-worker-{w}")
        proc.start()
        child.close()
        pipes.append(parent)
        procs.append(proc)
    latest: dict[int, dict[str, Any]] = {}
    errors: list[str] = []

    def forward(signum: int, _frame: Any) -> None:
        for p in procs:
            if p.pid is not None and p.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        open_pipes = list(pipes)
        while open_pipes:
            for ready in multiprocessing.connection.wait(open_pipes, timeout=0.5):
                assert isinstance(ready, multiprocessing.connection.Connection)
                try:
                    kind, worker, body = ready.recv()
                except EOFError:
                    open_pipes.remove(ready)
                    continue
                if kind in ("stats", "done"):
                    latest[worker] = body
                elif kind == "warn":
                    warn(f"worker {worker}: {body}")
                elif kind == "error":
                    errors.append(body)
            if report is not None and latest:
                report(sum_stats(list(latest.values())))
        for p in procs:
            p.join()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if errors:
        raise SimulatorError(errors[0])
    return sum_stats(list(latest.values()))


def sum_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if key in ("elapsed", "sim_time", "connect_seconds", "generation_seconds"):
                total[key] = max(total.get(key, 0.0), value)
            else:
                total[key] = total.get(key, 0) + value
    return total
