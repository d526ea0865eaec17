"""SQL of the retention task: which edition runs, and migration 0016's functions (the task's
role may not drop chunks itself; the functions refuse a period below the floor)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row
from pydantic import BaseModel

Conn = AsyncConnection[Any]


class DroppedChunk(BaseModel):
    dropped_chunk: str
    dropped_from: datetime
    dropped_to: datetime
    approximate_rows: int | None


async def edition(conn: Conn) -> str:
    """TimescaleDB's licence: `apache` (no policy jobs) or `timescale`."""
    cur = await conn.execute("SELECT coalesce(current_setting('timescaledb.license', true), 'apache')")
    row = await cur.fetchone()
    return "apache" if row is None else str(row[0])


async def drop_chunks_before(conn: Conn, older_than: datetime) -> list[DroppedChunk]:
    # drop_chunks waits for an exclusive lock on each chunk; it must not hold up the readers
    # and writers queued behind it for long. The next round tries again.
    await conn.execute("SET LOCAL lock_timeout = '10s'")
    async with conn.cursor(row_factory=class_row(DroppedChunk)) as cur:
        await cur.execute(
            "SELECT dropped_chunk, dropped_from, dropped_to, approximate_rows FROM drop_observation_chunks(%s)",
            (older_than,),
        )
        return await cur.fetchall()


async def set_policy(conn: Conn, keep: timedelta) -> int:
    cur = await conn.execute("SELECT set_observation_retention_policy(%s)", (keep,))
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])
