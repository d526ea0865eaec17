"""The command line end to end: `provision` through the platform's real path, then a run
spread over two worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
from sim_support import check_delivery

from devices.simulator.groundtruth import read_records
from infra.stack import Stack

ROOT = Path(__file__).resolve().parents[2]


def test_provision_then_run_with_two_workers(
    stack: Stack, db: psycopg.Connection, observer: Any, simulator: Any, tmp_path: Path
) -> None:
    prefix = f"c{uuid.uuid4().hex[:6]}"
    creds = tmp_path / "creds.json"
    env = {**os.environ, "RPM_DATABASE_URL": stack.admin_db_url, "RPM_MQTT_HOST": "127.0.0.1",
           "RPM_MQTT_PORT": str(stack.ports.mqtt), "RPM_MQTT_ADMIN_USERNAME": "rpm-admin",
           "RPM_MQTT_ADMIN_PASSWORD": stack.secrets.mqtt_admin_password}
    done = subprocess.run(
        [sys.executable, "-m", "devices.simulator", "provision", "--patients", "4", "--out", str(creds),
         "--prefix", prefix, "--cohorts", "heart_failure=1,diabetes=1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    body = json.loads(creds.read_text())
    assert {p["cohort"] for p in body["patients"]} == {"heart_failure", "diabetes"}
    assert len(body["devices"]) == 2 * 4 + 2 * 3  # HF: wearable, scale, cuff, bottle; diabetes: 3
    assert all(d["password"] for d in body["devices"])
    consented = db.execute(
        "SELECT count(*) FROM consents WHERE patient_id LIKE %s AND withdrawn_at IS NULL", (prefix + "%",)
    ).fetchone()
    bound = db.execute(
        "SELECT count(*) FROM device_bindings WHERE device_id LIKE %s AND valid_to IS NULL", (prefix + "%",)
    ).fetchone()
    assert consented == (4,)
    assert bound == (len(body["devices"]),)

    gt = tmp_path / "gt.jsonl"
    code, _out, err = simulator("--credentials", str(creds), "--workers", "2", "--rate", "60", "--duration", "4",
                               "--speed", "600", "--ground-truth", str(gt), "--queue-dir", str(tmp_path / "q"),
                               "--drain", "10").wait(90)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.glob("gt.w*.jsonl")) == ["gt.w0.jsonl", "gt.w1.jsonl"]
    summaries = [r for r in read_records(gt) if r["kind"] == "summary"]
    assert len(summaries) == 2
    assert sum(s["stats"]["devices"] for s in summaries) == len(body["devices"])
    observer.wait_for(lambda: check_delivery(gt, observer.messages()).missing == [], 20, "all messages")
    report = check_delivery(gt, observer.messages())
    assert report.out_of_order == []
    assert report.delivered > 40


def test_scenarios_are_listed() -> None:
    done = subprocess.run([sys.executable, "-m", "devices.simulator", "scenarios"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    for name in ("sepsis", "hypoxia", "hf_fluid", "hypertensive", "hypoglycaemia", "offline", "fault"):
        assert name in done.stdout
