"""SQL behind the access rules (care teams, patients, break-glass grants)."""

from __future__ import annotations

import uuid

from psycopg.rows import class_row

from api.access.schemas import BreakGlassGrant
from api.db import Conn


async def patient_exists(conn: Conn, patient_id: str) -> bool:
    cur = await conn.execute("SELECT EXISTS (SELECT 1 FROM patients WHERE id = %s)", (patient_id,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def clinician_cares_for(conn: Conn, user_id: uuid.UUID, patient_id: str) -> bool:
    """True when the user is a member of a care team the patient is on and shares with (the
    view of migration 0015: not when the patient withdrew `share_care_team`, ADR 0024)."""
    cur = await conn.execute(
        """
        SELECT EXISTS (
            SELECT 1
            FROM care_team_members AS m
            JOIN care_team_patients_shared AS p ON p.care_team_id = m.care_team_id
            WHERE m.user_id = %s AND p.patient_id = %s
        )
        """,
        (user_id, patient_id),
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def active_break_glass(conn: Conn, user_id: uuid.UUID, patient_id: str) -> uuid.UUID | None:
    """The id of the user's unexpired break-glass grant to this patient (the latest to end)."""
    cur = await conn.execute(
        """
        SELECT id FROM break_glass_grants
        WHERE user_id = %s AND patient_id = %s AND expires_at > now()
        ORDER BY expires_at DESC
        LIMIT 1
        """,
        (user_id, patient_id),
    )
    row = await cur.fetchone()
    return row[0] if row else None


async def open_break_glass(
    conn: Conn, user_id: uuid.UUID, patient_id: str, reason: str, minutes: int
) -> BreakGlassGrant:
    """A grant from now (the database's clock, as the access check uses) for `minutes`."""
    async with conn.cursor(row_factory=class_row(BreakGlassGrant)) as cur:
        await cur.execute(
            """
            INSERT INTO break_glass_grants (user_id, patient_id, reason, expires_at)
            VALUES (%s, %s, %s, now() + make_interval(mins => %s))
            RETURNING id, patient_id, reason, granted_at, expires_at
            """,
            (user_id, patient_id, reason, minutes),
        )
        row = await cur.fetchone()
    assert row is not None
    return row


async def list_active_break_glass(conn: Conn, user_id: uuid.UUID) -> list[BreakGlassGrant]:
    async with conn.cursor(row_factory=class_row(BreakGlassGrant)) as cur:
        await cur.execute(
            """
            SELECT id, patient_id, reason, granted_at, expires_at FROM break_glass_grants
            WHERE user_id = %s AND expires_at > now()
            ORDER BY expires_at, id
            """,
            (user_id,),
        )
        return await cur.fetchall()
