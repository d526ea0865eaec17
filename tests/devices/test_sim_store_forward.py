"""Store-and-forward against the real broker: the broker is stopped during a run and
started again; every message must arrive, in seq order per device, none lost; and the
1,000-device load run at QoS 1 loses nothing; a simulator killed while a device is offline
loses nothing either."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sim_support import check_delivery, dry_run, gt_messages, start_broker, stop_broker

from devices.simulator.config import Roster
from devices.simulator.groundtruth import read_records
from infra.stack import Stack

Provision = Callable[..., tuple[Roster, Path]]


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def run_with_outage(
    provisioned: Provision,
    observer: Any,
    simulator: Any,
    stack: Stack,
    tmp_path: Path,
    *,
    devices: int,
    rate: float,
    outage: float,
    duration: float,
) -> None:
    _roster, creds = provisioned(devices)
    gt = tmp_path / "gt.jsonl"
    sim = simulator(
        "--credentials",
        str(creds),
        "--rate",
        str(rate),
        "--duration",
        str(duration),
        "--drain",
        "90",
        "--ground-truth",
        str(gt),
        "--queue-dir",
        str(tmp_path / "q"),
    )
    observer.wait_for(lambda: len(observer.messages()) >= devices * 2, 60, "traffic before the outage")
    stop_broker(stack)
    down_from = time.time()
    try:
        time.sleep(outage)
    finally:
        start_broker(stack)
    down_to = time.time()
    code, _out, err = sim.wait(duration + outage + 180)
    assert code == 0, err
    records = list(read_records(gt))
    (summary,) = [r for r in records if r["kind"] == "summary"]
    assert all(d["pending"] == 0 for d in summary["devices"].values()), "queue not drained"
    assert summary["stats"]["lost_connections"] >= devices  # the outage reached every device
    during = [r for r in records if r["kind"] == "msg" and down_from < _ts(r["sent_at"]) < down_to]
    assert len(during) >= rate / 4 * (outage - 2)  # generated while the broker was down
    expected = sum(1 for r in records if r["kind"] == "msg")
    observer.wait_for(
        lambda: check_delivery(gt, observer.messages()).delivered >= expected, 60, "every message at the subscriber"
    )
    report = check_delivery(gt, observer.messages())
    assert report.missing == []
    assert report.out_of_order == []
    assert report.delivered == report.expected == expected
    print(
        f"\n{expected} messages, {report.duplicates} delivered twice by QoS 1 across the restart "
        f"(identical payloads, same seq)"
    )


def test_broker_outage_loses_nothing_and_keeps_order(
    provisioned: Provision, observer: Any, simulator: Any, stack: Stack, tmp_path: Path
) -> None:
    run_with_outage(provisioned, observer, simulator, stack, tmp_path, devices=10, rate=120, outage=5, duration=16)


@pytest.mark.slow
def test_broker_stopped_for_60_seconds(
    provisioned: Provision, observer: Any, simulator: Any, stack: Stack, tmp_path: Path
) -> None:
    run_with_outage(provisioned, observer, simulator, stack, tmp_path, devices=50, rate=400, outage=60, duration=100)


@pytest.mark.slow
def test_a_thousand_devices_for_60_seconds_lose_nothing(
    provisioned: Provision, observer: Any, simulator: Any, tmp_path: Path
) -> None:
    _roster, creds = provisioned(1000)
    gt = tmp_path / "gt.jsonl"
    code, out, err = simulator(
        "--credentials",
        str(creds),
        "--rate",
        "4000",
        "--duration",
        "60",
        "--drain",
        "60",
        "--ground-truth",
        str(gt),
        "--queue-dir",
        str(tmp_path / "q"),
    ).wait(300)
    assert code == 0, err
    records = list(read_records(gt))
    (summary,) = [r for r in records if r["kind"] == "summary"]
    assert summary["stats"]["connected"] == 1000
    assert summary["stats"]["acked"] == summary["stats"]["generated"] >= 55_000
    expected = summary["stats"]["generated"]
    observer.wait_for(lambda: len(observer.messages()) >= expected, 60, "every message at the subscriber")
    report = check_delivery(gt, observer.messages())
    assert report.missing == []
    assert report.out_of_order == []
    assert report.delivered == expected
    print(f"\n{out}")


def test_kill_9_while_offline_then_restart_delivers_everything_once(
    provisioned: Provision, observer: Any, simulator: Any, tmp_path: Path
) -> None:
    """Readings a device takes while offline are on disk at once: a simulator killed with
    SIGKILL in the offline window and started again with the same queue delivers them all,
    in seq order, each recorded once in the ground truth, identical to an uninterrupted run."""
    roster, creds = provisioned(2)
    device = roster.devices[0].device_id
    gt, queue = tmp_path / "gt.jsonl", tmp_path / "q"
    start = datetime.fromtimestamp(time.time() - 3600, UTC).replace(microsecond=0).isoformat()
    args = (
        "--credentials",
        str(creds),
        "--rate",
        "8",
        "--speed",
        "60",
        "--duration",
        "30",
        "--seed",
        "5",
        "--start",
        start,
        "--scenario",
        f"offline:patient={roster.devices[0].patient_id},start=2m,duration=15m",
        "--drain",
        "20",
        "--ground-truth",
        str(gt),
        "--queue-dir",
        str(queue),
    )
    sim = simulator(*args)

    def went_offline() -> bool:
        return gt.exists() and b'"action":"offline_start"' in gt.read_bytes()

    observer.wait_for(went_offline, 30, "the device going offline")
    time.sleep(6.0)  # about six simulated minutes of readings taken while offline
    sim.proc.send_signal(signal.SIGKILL)
    assert sim.wait(10)[0] == -signal.SIGKILL
    with sqlite3.connect(queue / "outbox.sqlite3") as db:
        (on_disk,) = db.execute("SELECT count(*) FROM outbox WHERE device_id = ? AND state = 0", (device,)).fetchone()
    assert on_disk >= 4, "readings taken offline must be in the on-disk queue"
    assert not any(r["kind"] == "summary" for r in read_records(gt))

    code, _out, err = simulator(*args).wait(90)
    assert code == 0, err
    records = list(read_records(gt))
    assert [r["kind"] for r in records].count("resume") == 1
    assert [r["kind"] for r in records].count("run") == 1
    msgs = [r for r in records if r["kind"] == "msg"]
    keys = [(m["device_id"], m["seq"]) for m in msgs]
    assert len(keys) == len(set(keys)), "a message recorded twice"
    stamps = [(m["device_id"], r["ts"]) for m in msgs for r in m["readings"] if r["metric"] == "heart_rate"]
    assert len(stamps) == len(set(stamps)), "a reading generated twice under another seq"
    (scenario,) = [r for r in records if r["kind"] == "scenario"]
    window = [
        m
        for m in msgs
        if m["device_id"] == device and _ts(scenario["start"]) <= _ts(m["sent_at"]) < _ts(scenario["end"])
    ]
    assert len(window) >= 14  # about one a simulated minute over 15 minutes

    expected = len(msgs)
    observer.wait_for(
        lambda: check_delivery(gt, observer.messages()).delivered >= expected, 30, "every message at the subscriber"
    )
    report = check_delivery(gt, observer.messages())
    assert report.missing == []
    assert report.out_of_order == []
    (summary,) = [r for r in records if r["kind"] == "summary"]
    assert all(d["pending"] == 0 for d in summary["devices"].values())

    # Same seed and start without the crash: the very same messages.
    uninterrupted = dry_run(
        tmp_path,
        "again",
        roster=roster,
        seed=5,
        speed=60,
        duration=30,
        rate=8,
        start=start,
        scenarios=(scenario_arg(args),),
    )
    assert gt_messages(uninterrupted) == gt_messages(gt)


def scenario_arg(args: tuple[str, ...]) -> str:
    return args[args.index("--scenario") + 1]
