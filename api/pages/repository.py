"""SQL of the pages that no service offers yet: the patients of the clinician's care teams,
their care plans, latest readings and devices (for my patients and the patient summary until
the patients service is in the tree)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from api.db import Conn


async def team_patients(conn: Conn, user_id: uuid.UUID, limit: int = 500) -> list[str]:
    """Ids of the patients on the user's care teams. (The API's database role may not read
    `patients` itself, ADR 0016: names wait for the patients service.)"""
    cur = await conn.execute(
        """
        SELECT DISTINCT p.patient_id
        FROM care_team_members AS m
        JOIN care_team_patients AS p ON p.care_team_id = m.care_team_id
        WHERE m.user_id = %s
        ORDER BY p.patient_id
        LIMIT %s
        """,
        (user_id, limit),
    )
    return [str(row[0]) for row in await cur.fetchall()]


async def care_plans(conn: Conn, patient_ids: list[str]) -> dict[str, Any]:
    """The stored plan (JSON) of each patient that has one."""
    cur = await conn.execute("SELECT patient_id, plan FROM care_plans WHERE patient_id = ANY(%s)", (patient_ids,))
    return {row[0]: row[1] for row in await cur.fetchall()}


async def latest_values(
    conn: Conn, patient_ids: list[str], metrics: tuple[str, ...], since: datetime
) -> dict[tuple[str, str], tuple[float, datetime]]:
    """The latest reading of each (patient, metric) taken after `since`."""
    cur = await conn.execute(
        """
        SELECT DISTINCT ON (patient_id, metric) patient_id, metric, value, ts
        FROM observations
        WHERE patient_id = ANY(%s) AND metric = ANY(%s) AND ts > %s
        ORDER BY patient_id, metric, ts DESC
        """,
        (patient_ids, list(metrics), since),
    )
    return {(row[0], row[1]): (float(row[2]), row[3]) for row in await cur.fetchall()}


@dataclass(frozen=True, slots=True)
class DeviceSeen:
    patient_id: str
    device_id: str
    device_class: str
    last_reading_at: datetime | None


async def device_last_readings(
    conn: Conn, patient_ids: list[str], metrics: list[str], since: datetime
) -> list[DeviceSeen]:
    """Each device bound to the patients now (not revoked), with its last reading after `since`.

    One probe per (device, metric) down the (patient_id, metric, ts) unique index, newest
    first: a silent device costs a short walk back to `since`, never a scan of the window's
    readings of every patient."""
    cur = await conn.execute(
        """
        SELECT b.patient_id, b.device_id, d.device_class, last.ts
        FROM device_bindings AS b
        JOIN devices AS d ON d.id = b.device_id
        LEFT JOIN LATERAL (
            SELECT max(o.ts) AS ts
            FROM unnest(%s::text[]) AS m (metric)
            CROSS JOIN LATERAL (
                SELECT o.ts FROM observations AS o
                WHERE o.patient_id = b.patient_id AND o.metric = m.metric
                  AND o.device_id = b.device_id AND o.ts > %s
                ORDER BY o.ts DESC LIMIT 1
            ) AS o
        ) AS last ON true
        WHERE b.patient_id = ANY(%s) AND b.valid_to IS NULL AND d.revoked_at IS NULL
        ORDER BY b.patient_id, b.device_id
        """,
        (metrics, since, patient_ids),
    )
    return [DeviceSeen(row[0], row[1], row[2], row[3]) for row in await cur.fetchall()]
