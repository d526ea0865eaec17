"""Store-and-forward against the real broker: the broker is stopped during a run and
started again; every message must arrive, in seq order per device, none lost; and the
1,000-device load run at QoS 1 loses nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sim_support import check_delivery, start_broker, stop_broker

from devices.simulator.config import Roster
from devices.simulator.groundtruth import read_records
from infra.stack import Stack

Provision = Callable[..., tuple[Roster, Path]]


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def run_with_outage(
    provisioned: Provision, observer: Any, simulator: Any, stack: Stack, tmp_path: Path,
    *, devices: int, rate: float, outage: float, duration: float,
) -> None:
    _roster, creds = provisioned(devices)
    gt = tmp_path / "gt.jsonl"
    sim = simulator("--credentials", str(creds), "--rate", str(rate), "--duration", str(duration),
                    "--drain", "90", "--ground-truth", str(gt), "--queue-dir", str(tmp_path / "q"))
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
    observer.wait_for(lambda: check_delivery(gt, observer.messages()).delivered >= expected, 60,
                      "every message at the subscriber")
    report = check_delivery(gt, observer.messages())
    assert report.missing == []
    assert report.out_of_order == []
    assert report.delivered == report.expected == expected
    print(f"\n{expected} messages, {report.duplicates} delivered twice by QoS 1 across the restart "
          f"(identical payloads, same seq)")


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
    code, out, err = simulator("--credentials", str(creds), "--rate", "4000", "--duration", "60", "--drain", "60",
                               "--ground-truth", str(gt), "--queue-dir", str(tmp_path / "q")).wait(300)
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
