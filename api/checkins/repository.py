"""SQL of check-ins: whether the patient's consent covers the observation."""

from __future__ import annotations

from datetime import datetime

from api.db import Conn


async def has_consent(conn: Conn, patient_id: str, at: datetime) -> bool:
    """True when a remote-monitoring consent of the patient is active at `at` (the rule the
    bridge applies to device readings: no consent, no ingestion)."""
    cur = await conn.execute(
        """
        SELECT EXISTS (
            SELECT 1 FROM consents
            WHERE patient_id = %s AND scope = 'remote_monitoring'
              AND granted_at <= %s AND (withdrawn_at IS NULL OR %s < withdrawn_at)
        )
        """,
        (patient_id, at, at),
    )
    row = await cur.fetchone()
    return bool(row and row[0])
