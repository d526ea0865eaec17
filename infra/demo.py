"""Demo data for the local stack: patients with consent, their devices, a care team, a
demo clinician and patient logins, and each demo patient's care plan (the simulator's plan
for its cohort and devices, stored in `care_plans` for the API and published on
`rpm.care-plans.v1` for the worker). Idempotent: a second run
reuses what exists (and publishes the same plans again; the topic is compacted)."""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import msgspec
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from api.security import hash_password
from core.careplan import CarePlan
from core.clients.provisioning import provision_device
from devices.simulator.config import load_credentials
from devices.simulator.provisioning import care_plans, publish_care_plans
from infra.stack import Stack


@dataclass(frozen=True)
class DemoPatient:
    patient_id: str
    name: str
    cohort: str
    devices: tuple[tuple[str, str], ...]  # (device_id, device_class)


DEMO_PATIENTS: Final = (
    DemoPatient("demo-p001", "Ada Demo", "healthy", (("demo-p001-wear", "wearable"), ("demo-p001-cuff", "bp_cuff"))),
    DemoPatient("demo-p002", "Ben Demo", "copd", (("demo-p002-wear", "wearable"), ("demo-p002-cuff", "bp_cuff"))),
    DemoPatient(
        "demo-p003",
        "Cleo Demo",
        "heart_failure",
        (("demo-p003-wear", "wearable"), ("demo-p003-scale", "scale"), ("demo-p003-pills", "pill_bottle")),
    ),
)
DEMO_CARE_TEAM: Final = "Demo care team"
DEMO_CLINICIAN: Final = "demo.clinician"
DEMO_CLINICIAN_EMAIL: Final = "demo.clinician@localhost"
# Scenarios the simulator plays on the demo patients so that the inbox fills within minutes of
# `make run`: a hypoxic episode for Ada from the first minute (NEWS2 single-parameter alert once
# SpO2 reaches 91 % after the 3 min ramp, `spo2_low` once it stays below 90 % for the care plan's
# 10 min), and a second one for Ben half an hour later.
DEMO_SCENARIOS: Final = (
    "hypoxia:patient=demo-p001,start=1m,duration=30m,nadir=85",
    "hypoxia:patient=demo-p002,start=30m,duration=20m",
)


async def _upsert_user(
    conn: AsyncConnection, username: str, password: str, role: str, name: str, patient_id: str | None
) -> str:
    cur = await conn.execute(
        """INSERT INTO users (username, password_hash, role, display_name, patient_id)
           VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash
           RETURNING id""",
        (username, hash_password(password), role, name, patient_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def _create(stack: Stack, previous: dict[str, Any]) -> dict[str, Any]:
    old_devices = {d["device_id"]: d["password"] for d in previous.get("devices", [])}
    old_users = {u["username"]: u["password"] for u in previous.get("patients", [])}
    clinician_pw = previous.get("clinician", {}).get("password") or secrets.token_urlsafe(12)
    enrolled = datetime.now(UTC) - timedelta(days=30)
    devices: list[dict[str, str]] = []
    patients: list[dict[str, str]] = []
    async with await AsyncConnection.connect(stack.admin_db_url) as conn, conn.transaction():
        cur = await conn.execute(
            "INSERT INTO care_teams (name) VALUES (%s) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name "
            "RETURNING id",
            (DEMO_CARE_TEAM,),
        )
        team = await cur.fetchone()
        assert team is not None
        clinician_id = await _upsert_user(conn, DEMO_CLINICIAN, clinician_pw, "clinician", "Dr Demo", None)
        await conn.execute(
            "INSERT INTO care_team_members VALUES (%s, %s) ON CONFLICT DO NOTHING", (team[0], clinician_id)
        )
        # The demo clinician hears of the demo alerts by e-mail too (the stack's SMTP server
        # keeps it in its maildir); no quiet hours.
        await conn.execute(
            "INSERT INTO notification_settings (user_id, email) VALUES (%s, %s) ON CONFLICT (user_id) DO NOTHING",
            (clinician_id, DEMO_CLINICIAN_EMAIL),
        )
        with stack.broker_admin() as admin:
            for p in DEMO_PATIENTS:
                await conn.execute(
                    "INSERT INTO patients (id, display_name, enrolled_at) VALUES (%s, %s, %s) "
                    "ON CONFLICT (id) DO NOTHING",
                    (p.patient_id, p.name, enrolled),
                )
                await conn.execute(
                    "INSERT INTO care_team_patients VALUES (%s, %s) ON CONFLICT DO NOTHING", (team[0], p.patient_id)
                )
                # Collection consent at enrolment, once: a demo patient who withdrew it in the
                # portal stays withdrawn across `make run`s.
                cur = await conn.execute(
                    "SELECT 1 FROM consents WHERE patient_id = %s AND scope = 'remote_monitoring'", (p.patient_id,)
                )
                if await cur.fetchone() is None:
                    await conn.execute(
                        "INSERT INTO consents (patient_id, granted_at) VALUES (%s, %s)", (p.patient_id, enrolled)
                    )
                username = p.patient_id.replace("demo-", "demo.")
                password = old_users.get(username) or secrets.token_urlsafe(12)
                await _upsert_user(conn, username, password, "patient", p.name, p.patient_id)
                patients.append(
                    {"patient_id": p.patient_id, "username": username, "password": password, "cohort": p.cohort}
                )
                for device_id, device_class in p.devices:
                    creds = await provision_device(
                        conn,
                        admin,
                        device_id=device_id,
                        patient_id=p.patient_id,
                        device_class=device_class,
                        valid_from=enrolled,
                        password=old_devices.get(device_id),
                    )
                    devices.append(
                        {
                            "device_id": creds.device_id,
                            "patient_id": creds.patient_id,
                            "device_class": creds.device_class,
                            "password": creds.password,
                        }
                    )
    return {
        "api_url": f"http://127.0.0.1:{stack.ports.api}",
        "clinician": {"username": DEMO_CLINICIAN, "password": clinician_pw},
        "patients": patients,
        "devices": devices,
    }


def ensure_demo_data(stack: Stack) -> tuple[Path, Path]:
    """Create the demo data; returns (demo credentials file, simulator credentials file)."""
    creds_path = stack.state / "demo-credentials.json"
    previous = json.loads(creds_path.read_text()) if creds_path.exists() else {}
    demo = asyncio.run(_create(stack, previous))
    creds_path.write_text(json.dumps(demo, indent=2))
    creds_path.chmod(0o600)
    sim_path = stack.state / "sim-devices.json"
    sim_path.write_text(
        json.dumps(
            {
                "devices": demo["devices"],
                # The demo COPD patient breathes room air (stated, so plan and simulation agree).
                "patients": [
                    {"patient_id": p["patient_id"], "cohort": p["cohort"], "on_oxygen": False} for p in demo["patients"]
                ],
            },
            indent=2,
        )
    )
    sim_path.chmod(0o600)
    # Monitoring starts now: the demo devices have no history, and a plan effective earlier would
    # have the timer report every scheduled measurement and dose of the days before as missed.
    plans = care_plans(load_credentials(sim_path), datetime.now(UTC))
    asyncio.run(_store_care_plans(stack, plans))
    asyncio.run(publish_care_plans(stack.kafka_bootstrap, plans))
    return creds_path, sim_path


async def _store_care_plans(stack: Stack, plans: list[CarePlan]) -> None:
    """The same plans in `care_plans`, where the API reads them (the care-plan page and its
    what-if show the plan the worker applies). Each start of the demo writes the demo's plan as
    a new version by nobody (updated_by NULL), replacing a clinician's edit of the last run."""
    async with await AsyncConnection.connect(stack.admin_db_url) as conn, conn.transaction():
        for plan in plans:
            await conn.execute(
                """
                INSERT INTO care_plans (patient_id, version, plan, updated_at, updated_by)
                VALUES (%s, 1, %s, now(), NULL)
                ON CONFLICT (patient_id) DO UPDATE
                SET version = care_plans.version + 1, plan = EXCLUDED.plan, updated_at = now(), updated_by = NULL
                """,
                (plan.patient_id, Jsonb(msgspec.to_builtins(plan))),
            )
