"""Provisioning simulated patients through the platform's own path: patients with active
consent in the database, their devices created, bound and given broker credentials by
`core.clients.provisioning.provision_device`, a credentials file for `rpm sim run`, and each patient's
care plan (`careplans.care_plan_for`) published on the compacted topic `rpm.care-plans.v1`,
keyed by patient id, as the API would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
from psycopg import AsyncConnection

from core.careplan import CarePlan, encode_care_plan
from core.clients.broker_admin import BrokerAdmin
from core.clients.provisioning import provision_device
from core.wire import CARE_PLANS
from devices.simulator.careplans import care_plan_for
from devices.simulator.config import ConfigError, DeviceEntry, Roster
from devices.simulator.physiology import COHORTS, PatientSpec, stable_key

DEFAULT_MIX = {"healthy": 0.4, "copd": 0.15, "heart_failure": 0.15, "hypertension": 0.15, "diabetes": 0.15}


def parse_mix(text: str | None) -> dict[str, float]:
    """'healthy=0.5,copd=0.5' (or a single cohort name) -> shares summing to 1."""
    if not text:
        return dict(DEFAULT_MIX)
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, share = part.partition("=")
        if name not in COHORTS:
            raise ConfigError(f"unknown cohort {name!r}; known: {', '.join(COHORTS)}")
        try:
            mix[name] = float(share) if share else 1.0
        except ValueError as exc:
            raise ConfigError(f"cohort share must be a number: {part!r}") from exc
    total = sum(mix.values())
    if total <= 0:
        raise ConfigError("cohort shares must add up to more than 0")
    return {k: v / total for k, v in mix.items()}


def plan_population(
    n_patients: int,
    mix: dict[str, float],
    seed: int,
    prefix: str = "sim",
    only_classes: tuple[str, ...] = (),
) -> Roster:
    """Patients (cohorts allocated by largest remainder, shuffled by the seed) and the
    devices their cohorts use; `only_classes` keeps only those device classes."""
    exact = {k: v * n_patients for k, v in mix.items()}
    counts = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[: n_patients - sum(counts.values())]:
        counts[k] += 1
    cohorts = [name for name, count in counts.items() for _ in range(count)]
    order = np.random.default_rng(stable_key(seed, "cohorts")).permutation(len(cohorts))
    patients, devices = [], []
    for i, j in enumerate(order):
        cohort = cohorts[int(j)]
        pid = f"{prefix}-p{i + 1:05d}"
        share = COHORTS[cohort].oxygen_share
        oxygen = bool(np.random.default_rng(stable_key(seed, "oxygen:" + pid)).random() < share) if share else False
        patients.append(PatientSpec(pid, cohort, oxygen))
        for device_class in COHORTS[cohort].devices:
            if not only_classes or device_class in only_classes:
                devices.append(DeviceEntry(f"{pid}-{device_class.replace('_', '')}", pid, device_class, ""))
    return Roster(patients, devices)


async def provision(
    conn: AsyncConnection,
    admin: BrokerAdmin,
    roster: Roster,
    *,
    valid_from: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Roster:
    """Create the patients (with active consent) and provision their devices; returns the
    roster with each device's password. One transaction per patient."""
    start = valid_from or datetime.now(UTC)
    by_patient: dict[str, list[DeviceEntry]] = {}
    for d in roster.devices:
        by_patient.setdefault(d.patient_id, []).append(d)
    issued: list[DeviceEntry] = []
    for n, patient in enumerate(roster.patients, 1):
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO patients (id, display_name, enrolled_at) VALUES (%s, %s, %s) ON CONFLICT (id) DO NOTHING",
                (patient.patient_id, f"Simulated {patient.cohort.replace('_', ' ')} patient {n}", start),
            )
            await conn.execute(
                "INSERT INTO consents (patient_id, scope, granted_at) SELECT %s, 'remote_monitoring', %s "
                # Enrolment consent once: a patient who withdrew it stays withdrawn when provisioned again.
                "WHERE NOT EXISTS (SELECT 1 FROM consents WHERE patient_id = %s AND scope = 'remote_monitoring')",
                (patient.patient_id, start, patient.patient_id),
            )
            for d in by_patient.get(patient.patient_id, []):
                creds = await provision_device(
                    conn,
                    admin,
                    device_id=d.device_id,
                    patient_id=patient.patient_id,
                    device_class=d.device_class,
                    valid_from=start,
                    model="rpm-sim",
                )
                issued.append(DeviceEntry(d.device_id, patient.patient_id, d.device_class, creds.password))
        if progress is not None:
            progress(n, len(roster.patients))
    return Roster(list(roster.patients), issued)


def backdated(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def care_plans(roster: Roster, effective_from: datetime | None = None) -> list[CarePlan]:
    """One plan per patient of the roster, matching its cohort and devices."""
    classes: dict[str, set[str]] = {}
    for d in roster.devices:
        classes.setdefault(d.patient_id, set()).add(d.device_class)
    return [
        care_plan_for(
            p.patient_id, p.cohort, bool(p.on_oxygen), classes.get(p.patient_id, set()), effective_from=effective_from
        )
        for p in roster.patients
    ]


async def publish_care_plans(bootstrap: str, plans: list[CarePlan], *, timeout_s: float = 30.0) -> int:
    """Write the plans to `rpm.care-plans.v1` (key: patient id; acks from all replicas)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await producer.start()
        futures = [
            await producer.send(CARE_PLANS.name, value=encode_care_plan(plan), key=plan.patient_id.encode())
            for plan in plans
        ]
        await asyncio.wait_for(asyncio.gather(*futures), timeout_s)
        return len(futures)
    finally:
        await producer.stop()
