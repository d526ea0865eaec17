"""The command line end to end: `provision` through the platform's real path, then a run
spread over two worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from sim_support import check_delivery, dry_run

from core.careplan import CarePlan, decode_care_plan
from core.rules import Rule
from core.wire import CARE_PLANS
from devices.simulator.config import load_credentials
from devices.simulator.groundtruth import read_records
from infra.stack import Stack
from tests.streams.support import read_topic

ROOT = Path(__file__).resolve().parents[2]


def provision_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RPM_DATABASE_URL": stack.admin_db_url,
        "RPM_MQTT_HOST": "127.0.0.1",
        "RPM_MQTT_PORT": str(stack.ports.mqtt),
        "RPM_MQTT_ADMIN_USERNAME": "rpm-admin",
        "RPM_MQTT_ADMIN_PASSWORD": stack.secrets.mqtt_admin_password,
        "RPM_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
    }
    return subprocess.run(
        [sys.executable, "-m", "devices.simulator", "provision", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_provision_then_run_with_two_workers(
    stack: Stack, db: psycopg.Connection, observer: Any, simulator: Any, tmp_path: Path
) -> None:
    prefix = f"c{uuid.uuid4().hex[:6]}"
    creds = tmp_path / "creds.json"
    done = provision_cli(
        stack, "--patients", "4", "--out", str(creds), "--prefix", prefix, "--cohorts", "heart_failure=1,diabetes=1"
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
    code, _out, err = simulator(
        "--credentials",
        str(creds),
        "--workers",
        "2",
        "--rate",
        "60",
        "--duration",
        "4",
        "--speed",
        "600",
        "--ground-truth",
        str(gt),
        "--queue-dir",
        str(tmp_path / "q"),
        "--drain",
        "10",
    ).wait(90)
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
    done = subprocess.run(
        [sys.executable, "-m", "devices.simulator", "scenarios"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for name in ("sepsis", "hypoxia", "hf_fluid", "hypertensive", "hypoglycaemia", "offline", "fault"):
        assert name in done.stdout


def test_provision_publishes_a_care_plan_per_patient_matching_the_cohort(stack: Stack, tmp_path: Path) -> None:
    prefix = f"cp{uuid.uuid4().hex[:6]}"
    creds = tmp_path / "creds.json"
    done = provision_cli(
        stack,
        "--patients",
        "12",
        "--out",
        str(creds),
        "--prefix",
        prefix,
        "--cohorts",
        "copd=4,heart_failure=2,diabetes=2,hypertension=2,healthy=2",
    )
    assert done.returncode == 0, done.stderr
    assert "published 12 care plans" in done.stdout
    patients = {p["patient_id"]: p for p in json.loads(creds.read_text())["patients"]}

    published: dict[str, CarePlan] = {}
    for key, value in read_topic(stack.kafka_bootstrap, CARE_PLANS.name, CARE_PLANS.partitions):
        if key is not None and key.decode().startswith(prefix):
            plan = decode_care_plan(value)
            assert plan.patient_id == key.decode()
            published[plan.patient_id] = plan
    assert published.keys() == patients.keys()

    t = clock_time
    for pid, plan in published.items():
        cohort = patients[pid]["cohort"]
        assert plan.version >= 1
        assert plan.timezone == "UTC"
        assert plan.effective_from is not None
        assert plan.on_oxygen is bool(patients[pid]["on_oxygen"])
        spo2_low = next(limit for limit in plan.limits if limit.rule is Rule.SPO2_LOW)
        metrics = {m.metric: m for m in plan.measurements}
        doses = {m.dose_id: m for m in plan.medications}
        assert plan.silence["wearable"].mode == "continuous"
        if cohort == "copd":
            assert plan.news2.spo2_scale == 2
            assert (spo2_low.raise_at, spo2_low.clear_at, spo2_low.sustained_s) == (86, 88, 600)
            assert metrics == {}  # the wearable reports SpO2 and pulse: an oximeter miss is invisible
            assert doses["inhaler"].times_of_day == (t(8), t(20))
        else:
            assert plan.news2.spo2_scale == 1
            assert not plan.on_oxygen
            assert (spo2_low.raise_at, spo2_low.clear_at) == (90, 92)
        assert plan.hf_weight.enabled is (cohort == "heart_failure")
        if cohort == "heart_failure":
            hf = plan.hf_weight
            assert (hf.gain_1d_kg, hf.gain_3d_kg, hf.gain_7d_kg) == (1.4, 2.0, 2.3)
            assert metrics["body_weight"].times_of_day == (t(7),)
            assert metrics["bp_systolic"].times_of_day == (t(7, 30), t(19, 30))
            assert doses["diuretic"].times_of_day == (t(8), t(20))
        if cohort == "diabetes":
            assert metrics["glucose"].times_of_day == (t(7, 15), t(9), t(14))
            assert doses["mealtime-insulin"].times_of_day == (t(7, 30), t(12, 30), t(18, 30))
        if cohort == "hypertension":
            assert metrics["bp_systolic"].times_of_day == (t(7, 30), t(19, 30))
            assert doses["antihypertensive"].times_of_day == (t(8),)
        if cohort == "healthy":
            assert plan.measurements == plan.medications == ()
        assert all(m.tolerance_s == 3600 for m in plan.measurements)
        assert all(m.window_s == 7200 for m in plan.medications)

    # The ground truth of a run judges each patient by the very plan that was published.
    gt = dry_run(tmp_path, "plans", roster=load_credentials(creds), duration=2)
    judged = {
        r["patient_id"]: decode_care_plan(msgspec.json.encode(r["care_plan"]))
        for r in read_records(gt)
        if r["kind"] == "patient"
    }
    assert judged == {pid: msgspec.structs.replace(plan, effective_from=None) for pid, plan in published.items()}
