"""SQL of consents. A grant is a row; a withdrawal closes the open row; no row is changed
otherwise (migration 0012 adds a trigger that refuses any other UPDATE)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from api.db import Conn


@dataclass(frozen=True, slots=True)
class Grant:
    """A row of `consents`."""

    id: int
    scope: str
    granted_at: datetime
    withdrawn_at: datetime | None
    document_version: str | None


async def lock_patient(conn: Conn, patient_id: str) -> None:
    """Serialise changes of one patient's consents until the transaction ends (two clicks at
    once must not open two grants)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('consents:' || %s, 0))", (patient_id,))


async def grants(conn: Conn, patient_id: str) -> list[Grant]:
    """Every grant of the patient, oldest first."""
    cur = await conn.execute(
        """
        SELECT id, scope, granted_at, withdrawn_at, document_version
        FROM consents WHERE patient_id = %s
        ORDER BY granted_at, id
        """,
        (patient_id,),
    )
    return [Grant(*row) for row in await cur.fetchall()]


async def give(
    conn: Conn, patient_id: str, scope: str, document_version: str, at: datetime, recorded_by: uuid.UUID
) -> None:
    await conn.execute(
        """
        INSERT INTO consents (patient_id, scope, granted_at, document_version, recorded_by)
        VALUES (%s, %s, %s, %s, %s)
        """,
        (patient_id, scope, at, document_version, recorded_by),
    )


async def record_enrolment_grant(conn: Conn, patient_id: str, scope: str, at: datetime) -> None:
    """A grant given at enrolment and never written down (no document version, nobody
    recording it through the portal), so that a withdrawal has a grant to close."""
    await conn.execute(
        "INSERT INTO consents (patient_id, scope, granted_at) VALUES (%s, %s, %s)", (patient_id, scope, at)
    )


async def withdraw(conn: Conn, patient_id: str, scope: str, at: datetime) -> int:
    """Close every open grant of the tier (normally one; grants recorded at enrolment by other
    tools may have left two); a grant that starts later than `at` closes where it starts."""
    cur = await conn.execute(
        """
        UPDATE consents SET withdrawn_at = GREATEST(%s, granted_at)
        WHERE patient_id = %s AND scope = %s AND withdrawn_at IS NULL
        """,
        (at, patient_id, scope),
    )
    return cur.rowcount
