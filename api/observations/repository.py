"""SQL of observation reads (hypertable `observations`)."""

from __future__ import annotations

from datetime import datetime

from psycopg.rows import class_row

from api.db import Conn
from api.observations.schemas import ObservationRead


async def list_observations(
    conn: Conn, patient_id: str, metric: str, start: datetime, end: datetime, limit: int
) -> list[ObservationRead]:
    """Observations in [start, end), oldest first; the range lets TimescaleDB skip chunks."""
    async with conn.cursor(row_factory=class_row(ObservationRead)) as cur:
        await cur.execute(
            """
            SELECT ts, value, device_id
            FROM observations
            WHERE patient_id = %s AND metric = %s AND ts >= %s AND ts < %s
            ORDER BY ts
            LIMIT %s
            """,
            (patient_id, metric, start, end, limit),
        )
        return await cur.fetchall()
