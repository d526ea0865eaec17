"""End to end: a simulated hypoxic episode becomes exactly one open SpO2 alert.

A patient is provisioned through the platform's path with its care plan on
`rpm.care-plans.v1`; the simulator's wearable plays half an hour of simulated time in about a
minute with a hypoxic episode; the bridge, the Faust worker and the alert service do the rest.
Every `spo2_low` raise the worker published for the patient is one alert's repeat: one alert,
open, its repeat count equal to the raises, each raise in the history.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from devices.simulator.config import write_credentials
from devices.simulator.provisioning import backdated, care_plans, plan_population, provision, publish_care_plans
from infra.stack import Stack
from tests.helpers import unique, wait_for
from tests.streams.support import DetectionLog, metric_samples

ROOT = Path(__file__).resolve().parents[2]
SPEED = 30.0
DURATION_S = 60  # thirty simulated minutes


def _plans_applied(stack: Stack) -> float:
    return sum(metric_samples(stack.ports.streams_metrics, "rpm_streams_care_plans_total").values())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_hypoxic_episode_becomes_one_open_spo2_alert(platform: Stack, db: psycopg.Connection, tmp_path: Path) -> None:
    platform.start_alerts()
    roster = plan_population(1, {"healthy": 1.0}, seed=11, prefix=unique("hyp"))
    start = datetime.now(UTC) - timedelta(seconds=DURATION_S * SPEED + 120)

    async def go() -> None:
        async with await psycopg.AsyncConnection.connect(platform.admin_db_url) as conn:
            with platform.broker_admin() as admin:
                issued = await provision(conn, admin, roster, valid_from=backdated(3))
        applied = _plans_applied(platform)
        await publish_care_plans(platform.kafka_bootstrap, care_plans(issued, start))
        write_credentials(tmp_path / "credentials.json", issued)
        deadline = asyncio.get_running_loop().time() + 60
        while _plans_applied(platform) < applied + 1:
            assert asyncio.get_running_loop().time() < deadline, "the worker did not apply the care plan"
            await asyncio.sleep(0.5)

    asyncio.run(go())
    (patient,) = [p.patient_id for p in roster.patients]
    env = {**os.environ, "RPM_MQTT_HOST": "127.0.0.1", "RPM_MQTT_PORT": str(platform.ports.mqtt)}
    args = [
        sys.executable, "-m", "devices.simulator", "run", "--no-progress",
        "--credentials", str(tmp_path / "credentials.json"), "--speed", str(SPEED), "--duration", str(DURATION_S),
        "--interval", "2", "--drain", "30", "--queue-dir", str(tmp_path / "queue"), "--seed", "11",
        "--start", start.isoformat(), "--scenario", f"hypoxia:patient={patient},start=3m,nadir=84,duration=40m",
    ]  # fmt: skip
    sim = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=DURATION_S + 120)
    assert sim.returncode == 0, sim.stderr[-2000:]

    log = DetectionLog(platform.kafka_bootstrap, {patient})
    raises = [r for r in log.wait_for(lambda rs: any(r.rule == "spo2_low" for r in rs)) if r.rule == "spo2_low"]
    assert raises, "the worker raised no spo2_low for the hypoxic episode"
    assert all(r.kind == "raise" for r in raises)  # the episode lasts past the run: no clear
    ids = [r.detection_id for r in raises]

    def alerts() -> list[tuple[str, str, int]]:
        return [
            (str(r[0]), r[1], int(r[2]))
            for r in db.execute(
                "SELECT id, state, repeat_count FROM alerts WHERE patient_id = %s AND rule = 'spo2_low'", (patient,)
            ).fetchall()
        ]

    def processed() -> bool:
        row = db.execute("SELECT count(*) FROM alert_detections WHERE detection_id = ANY(%s)", (ids,)).fetchone()
        return row is not None and row[0] == len(ids)

    assert wait_for(processed, timeout=60)
    [(alert_id, state, repeats)] = alerts()
    assert (state, repeats) == ("open", len(ids))
    history = db.execute(
        "SELECT kind, detail->>'detection_id' FROM alert_events WHERE alert_id = %s ORDER BY id", (alert_id,)
    ).fetchall()
    assert [k for k, _ in history if k in ("opened", "retriggered")] == ["opened"] + ["retriggered"] * (len(ids) - 1)
    assert [d for k, d in history if k in ("opened", "retriggered")] == ids
