"""SQL behind the access rules (care teams and patients)."""

from __future__ import annotations

import uuid

from api.db import Conn


async def patient_exists(conn: Conn, patient_id: str) -> bool:
    cur = await conn.execute("SELECT EXISTS (SELECT 1 FROM patients WHERE id = %s)", (patient_id,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def clinician_cares_for(conn: Conn, user_id: uuid.UUID, patient_id: str) -> bool:
    """True when the user is a member of a care team the patient is on."""
    cur = await conn.execute(
        """
        SELECT EXISTS (
            SELECT 1
            FROM care_team_members AS m
            JOIN care_team_patients AS p ON p.care_team_id = m.care_team_id
            WHERE m.user_id = %s AND p.patient_id = %s
        )
        """,
        (user_id, patient_id),
    )
    row = await cur.fetchone()
    return bool(row and row[0])
