"""The simulator against the whole platform: every reading the ground truth says was sent
(and acknowledged) is stored exactly once in TimescaleDB."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devices.simulator.config import Roster
from devices.simulator.groundtruth import read_records
from infra.stack import Stack

Provision = Callable[..., tuple[Roster, Path]]


def expected_readings(gt: Path) -> set[tuple[str, str, str]]:
    """(patient_id, metric, ts) of every valid reading the devices sent."""
    out: set[tuple[str, str, str]] = set()
    for rec in read_records(gt):
        if rec["kind"] != "msg" or rec.get("fault"):
            continue
        for reading in rec["readings"]:
            out.add((rec["patient_id"], reading["metric"], reading["ts"]))
    return out


def stored(db: psycopg.Connection, patients: list[str]) -> int:
    row = db.execute("SELECT count(*) FROM observations WHERE patient_id = ANY(%s)", (patients,)).fetchone()
    return int(row[0]) if row else 0


def run_through_platform(
    platform: Stack,
    db: psycopg.Connection,
    provisioned: Provision,
    simulator: Any,
    tmp_path: Path,
    *,
    devices: int,
    rate: int,
    duration: int,
) -> None:
    roster, creds = provisioned(devices)
    patients = sorted({d.patient_id for d in roster.devices})
    gt = tmp_path / "gt.jsonl"
    code, _out, err = simulator(
        "--credentials",
        str(creds),
        "--rate",
        str(rate),
        "--duration",
        str(duration),
        "--drain",
        "60",
        "--ground-truth",
        str(gt),
        "--queue-dir",
        str(tmp_path / "q"),
    ).wait(duration + 240)
    assert code == 0, err
    (summary,) = [r for r in read_records(gt) if r["kind"] == "summary"]
    assert summary["stats"]["acked"] == summary["stats"]["generated"] > 0
    expected = expected_readings(gt)
    deadline = time.monotonic() + 180
    while stored(db, patients) < len(expected) and time.monotonic() < deadline:
        time.sleep(1)
    time.sleep(2)  # nothing more may arrive: no duplicates, no strays
    assert stored(db, patients) == len(expected)
    sample = sorted(expected)[:: max(1, len(expected) // 200)]
    for patient_id, metric, ts in sample:
        row = db.execute(
            "SELECT count(*) FROM observations WHERE patient_id = %s AND metric = %s AND ts = %s",
            (patient_id, metric, ts),
        ).fetchone()
        assert row == (1,), (patient_id, metric, ts)


def test_simulated_devices_readings_are_all_stored(
    platform: Stack, db: psycopg.Connection, provisioned: Provision, simulator: Any, tmp_path: Path
) -> None:
    run_through_platform(platform, db, provisioned, simulator, tmp_path, devices=20, rate=200, duration=10)


@pytest.mark.slow
def test_a_thousand_devices_for_60_seconds_through_the_platform(
    platform: Stack, db: psycopg.Connection, provisioned: Provision, simulator: Any, tmp_path: Path
) -> None:
    run_through_platform(platform, db, provisioned, simulator, tmp_path, devices=1000, rate=2000, duration=60)
