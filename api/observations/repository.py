"""SQL of observation reads (hypertable `observations`)."""

from __future__ import annotations

from datetime import datetime

from psycopg.rows import class_row

from api.db import Conn
from api.observations.schemas import ObservationRead


async def list_observations(
    conn: Conn,
    patient_id: str,
    metric: str,
    start: datetime,
    end: datetime,
    limit: int,
    after: datetime | None = None,
) -> list[ObservationRead]:
    """Observations in [start, end) and after `after` (keyset paging), oldest first; the
    range lets TimescaleDB skip chunks, and (patient, metric, ts) is unique, so `ts > after`
    continues exactly after the previous page's last item."""
    async with conn.cursor(row_factory=class_row(ObservationRead)) as cur:
        await cur.execute(
            """
            SELECT ts, value, device_id
            FROM observations
            WHERE patient_id = %(patient)s AND metric = %(metric)s AND ts >= %(start)s AND ts < %(end)s
              AND (%(after)s::timestamptz IS NULL OR ts > %(after)s::timestamptz)
            ORDER BY ts
            LIMIT %(limit)s
            """,
            {"patient": patient_id, "metric": metric, "start": start, "end": end, "after": after, "limit": limit},
        )
        return await cur.fetchall()
