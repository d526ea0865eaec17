"""The history the API benchmark (bench/api_latency.py) reads: patients with consent and a
provisioned wearable each (through devices.simulator.provisioning), clinicians each with a care
team, N days of readings COPY'd into `observations` (wearable vitals every few minutes, weight
and blood pressure daily) and a history of open and resolved alerts, written as the platform
writes them."""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from api.security import hash_password
from core.rules import Rule
from devices.simulator.config import write_credentials
from devices.simulator.provisioning import backdated, plan_population, provision
from infra.stack import Stack

PASSWORD = "bench password, not a secret"  # noqa: S105 - the throwaway stack's test logins
# The rule of the stream run's detections: wearables never raise it, so the simulator's own
# detections cannot be taken for ours, and the seeded alerts leave it free (one open per rule).
SSE_RULE = Rule.GLUCOSE_HIGH


@dataclass
class Clinician:
    username: str
    patients: list[str]
    token: str = ""


@dataclass
class Seeded:
    patients: list[str]
    clinicians: list[Clinician]
    rows: int = 0
    seed_s: float = 0.0
    provision_s: float = 0.0
    table_bytes: int = 0
    open_alerts: int = 0
    resolved_alerts: int = 0


def provision_patients(stack: Stack, n: int, days: int, creds: Path) -> list[str]:
    """Patients with consent and one wearable each (bound since before the seeded history)."""
    plan = plan_population(n, {"healthy": 1.0}, 1, "bench", ("wearable",))

    async def go() -> None:
        async with await psycopg.AsyncConnection.connect(stack.admin_db_url) as conn:
            with stack.broker_admin() as admin:
                roster = await provision(conn, admin, plan, valid_from=backdated(days + 1))
                write_credentials(creds, roster)

    asyncio.run(go())
    return [p.patient_id for p in plan.patients]


def seed_people(db: psycopg.Connection, patients: list[str], team_size: int) -> list[Clinician]:
    """One clinician per team of `team_size` patients (the last team may be smaller)."""
    password_hash = hash_password(PASSWORD)
    clinicians = []
    for n, first in enumerate(range(0, len(patients), team_size)):
        members = patients[first : first + team_size]
        username = f"bench-dr-{n:03d}"
        user = db.execute(
            "INSERT INTO users (username, password_hash, role, display_name) VALUES (%s, %s, 'clinician', %s) "
            "RETURNING id",
            (username, password_hash, f"Dr Bench {n}"),
        ).fetchone()
        team = db.execute("INSERT INTO care_teams (name) VALUES (%s) RETURNING id", (f"bench-team-{n:03d}",)).fetchone()
        assert user is not None
        assert team is not None
        db.execute("INSERT INTO care_team_members (care_team_id, user_id) VALUES (%s, %s)", (team[0], user[0]))
        with db.cursor() as cur:
            cur.executemany(
                "INSERT INTO care_team_patients (care_team_id, patient_id) VALUES (%s, %s)",
                [(team[0], p) for p in members],
            )
        clinicians.append(Clinician(username, members))
    return clinicians


def seed_observations(db: psycopg.Connection, patients: list[str], days: int, interval_min: int) -> int:
    """COPY the readings: 4 wearable vitals per slot, weight and blood pressure once a day."""
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    slots = days * 24 * 60 // interval_min
    start = end - timedelta(minutes=interval_min * (slots - 1))
    stamps = [(start + timedelta(minutes=interval_min * i)).isoformat() for i in range(slots)]
    mornings = [(end - timedelta(days=d, hours=2)).isoformat() for d in range(days)]
    rng = np.random.default_rng(11)
    rows = 0
    copy_sql = "COPY observations (patient_id, device_id, metric, ts, value, received_at, seq) FROM STDIN"
    for first in range(0, len(patients), 50):
        with db.transaction(), db.cursor() as cur, cur.copy(copy_sql) as copy:
            for pid in patients[first : first + 50]:
                wearable = f"{pid}-wearable"
                series = {
                    "heart_rate": np.round(rng.normal(rng.normal(74, 6), 4, slots)),
                    "spo2": np.minimum(100, np.round(rng.normal(96.5, 1.0, slots))),
                    "resp_rate": np.round(rng.normal(15, 1.5, slots)),
                    "body_temp": np.round(rng.normal(36.8, 0.2, slots), 1),
                }
                parts = []
                for metric, values in series.items():
                    head = f"{pid}\t{wearable}\t{metric}\t"
                    parts.append(
                        "".join(
                            f"{head}{ts}\t{v}\t{ts}\t{i}\n"
                            for i, (ts, v) in enumerate(zip(stamps, values.tolist(), strict=True))
                        )
                    )
                    rows += slots
                daily = {
                    "body_weight": np.round(rng.normal(rng.normal(80, 12), 0.4, days), 1),
                    "bp_systolic": np.round(rng.normal(rng.normal(128, 10), 7, days)),
                    "bp_diastolic": np.round(rng.normal(rng.normal(80, 6), 5, days)),
                }
                for metric, values in daily.items():
                    device = f"{pid}-{'scale' if metric == 'body_weight' else 'bpcuff'}"
                    head = f"{pid}\t{device}\t{metric}\t"
                    parts.append(
                        "".join(
                            f"{head}{ts}\t{v}\t{ts}\t{i}\n"
                            for i, (ts, v) in enumerate(zip(mornings, values.tolist(), strict=True))
                        )
                    )
                    rows += days
                copy.write("".join(parts))
        print(f"  seeded {min(first + 50, len(patients))}/{len(patients)} patients ({rows:,} rows)", flush=True)
    return rows


def seed_alerts(db: psycopg.Connection, patients: list[str], open_n: int, resolved_n: int, days: int) -> None:
    """Open alerts (one per patient and rule, as the service keeps them) and a resolved history,
    each with its 'opened' history row as the alert service writes it."""
    rng = random.Random(5)  # noqa: S311 - sampling test data, not a secret
    now = datetime.now(UTC)
    rules = [r.value for r in Rule if r is not SSE_RULE]
    severities = ["low", "medium", "high", "critical"]
    dispositions = ["actionable", "not_actionable", "false_reading", "duplicate", "self_resolved"]
    pairs: set[tuple[str, str]] = set()
    while len(pairs) < min(open_n, len(patients) * len(rules)):
        pairs.add((rng.choice(patients), rng.choice(rules)))
    alerts: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    for pid, rule in sorted(pairs):
        opened = now - timedelta(minutes=rng.uniform(1, 72 * 60))
        severity = rng.choice(severities)
        aid = str(uuid.uuid4())
        alerts.append((aid, pid, rule, severity, "open", opened, None, None))
        events.append((aid, opened, None, "open", pid, "opened"))
    for _ in range(resolved_n):
        pid, rule = rng.choice(patients), rng.choice(rules)
        opened = now - timedelta(minutes=rng.uniform(60, days * 24 * 60))
        aid = str(uuid.uuid4())
        alerts.append(
            (
                aid,
                pid,
                rule,
                rng.choice(severities),
                "resolved",
                opened,
                opened + timedelta(hours=1),
                rng.choice(dispositions),
            )
        )
        events.append((aid, opened, None, "open", pid, "opened"))
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO alerts (id, patient_id, rule, severity, state, title, evidence, opened_at, updated_at, "
            "resolved_at, disposition, detection_ids, last_triggered_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (a, p, r, s, st, f"{r} ({s})", Jsonb({"value": 1}), o, res or o, res, d, [f"det-{a}"], o)
                for a, p, r, s, st, o, res, d in alerts
            ],
        )
        cur.executemany(
            "INSERT INTO alert_events (alert_id, at, from_state, to_state, patient_id, kind, detail) "
            "VALUES (%s, %s, %s, %s, %s, %s, '{}'::jsonb)",
            events,
        )


def seed(stack: Stack, args: argparse.Namespace) -> Seeded:
    started = time.monotonic()
    patients = provision_patients(stack, args.patients, args.days, stack.state / "devices.json")
    provisioned = time.monotonic() - started
    print(f"  provisioned {len(patients):,} patients and wearables in {provisioned:.0f} s", flush=True)
    with psycopg.connect(stack.admin_db_url, autocommit=True) as db:
        clinicians = seed_people(db, patients, args.team_size)
        started = time.monotonic()
        rows = seed_observations(db, patients, args.days, args.interval_minutes)
        db.execute("ANALYZE observations")
        seed_s = time.monotonic() - started
        seed_alerts(db, patients, args.open_alerts, args.resolved_alerts, args.days)
        db.execute("ANALYZE")
        size = db.execute("SELECT hypertable_size('observations')").fetchone()
        counts = db.execute("SELECT count(*) FILTER (WHERE state <> 'resolved'), count(*) FROM alerts").fetchone()
    assert size is not None
    assert counts is not None
    return Seeded(
        patients, clinicians, rows, seed_s, provisioned, int(size[0]), int(counts[0]), int(counts[1] - counts[0])
    )
