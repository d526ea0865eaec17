"""SQL of the pages that no service offers yet: the patients of the clinician's care teams."""

from __future__ import annotations

import uuid

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
