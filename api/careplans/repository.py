"""SQL of care plans (`care_plans`) and of the stored readings the what-if replays."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from api.db import Conn
from core.wire import Reading


@dataclass(frozen=True, slots=True)
class StoredPlan:
    version: int
    plan: dict[str, Any]
    updated_at: datetime
    updated_by: uuid.UUID | None


async def get_plan(conn: Conn, patient_id: str) -> StoredPlan | None:
    cur = await conn.execute(
        "SELECT version, plan, updated_at, updated_by FROM care_plans WHERE patient_id = %s", (patient_id,)
    )
    row = await cur.fetchone()
    return None if row is None else StoredPlan(row[0], row[1], row[2], row[3])


async def store_plan(
    conn: Conn, patient_id: str, *, replaces: int, plan: dict[str, Any], by: uuid.UUID, at: datetime
) -> bool:
    """Store version `replaces + 1`; False when the current version is not `replaces` any more.

    The statement takes the row lock (a concurrent change waits, then finds another version
    and loses); the lock is held until the request's transaction ends.
    """
    if replaces == 0:
        cur = await conn.execute(
            """
            INSERT INTO care_plans (patient_id, version, plan, updated_at, updated_by)
            VALUES (%s, 1, %s, %s, %s)
            ON CONFLICT (patient_id) DO NOTHING
            RETURNING version
            """,
            (patient_id, Jsonb(plan), at, by),
        )
    else:
        cur = await conn.execute(
            """
            UPDATE care_plans SET version = version + 1, plan = %s, updated_at = %s, updated_by = %s
            WHERE patient_id = %s AND version = %s
            RETURNING version
            """,
            (Jsonb(plan), at, by, patient_id, replaces),
        )
    return await cur.fetchone() is not None


async def readings(conn: Conn, patient_id: str, start: datetime, end: datetime, limit: int) -> list[Reading]:
    """The patient's stored readings in [start, end), oldest first, at most `limit`."""
    cur = await conn.execute(
        """
        SELECT metric, value, ts, dose_id FROM observations
        WHERE patient_id = %s AND ts >= %s AND ts < %s
        ORDER BY ts
        LIMIT %s
        """,
        (patient_id, start, end, limit),
    )
    return [Reading(metric, value, ts, dose_id) for metric, value, ts, dose_id in await cur.fetchall()]
