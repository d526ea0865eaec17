"""SQL of the storage lane: binary COPY into a per-connection staging table, then
`INSERT ... ON CONFLICT DO NOTHING` so that a replay changes nothing.

Binary COPY (ADR 0035): the worker packs each time as 8 bytes instead of formatting it as text,
and PostgreSQL reads it back without parsing; text COPY cost about a quarter of the worker's
CPU and a good part of the database's at five readings per message."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

from psycopg import AsyncConnection

Row = tuple[str, str, str, datetime, float, datetime, int, str | None]

COLUMNS: Final = "patient_id, device_id, metric, ts, value, received_at, seq, dose_id"
# the columns' types, in COLUMNS' order (binary COPY sends no type with a value)
TYPES: Final = ("text", "text", "text", "timestamptz", "float8", "timestamptz", "int8", "text")


async def store_rows(conn: AsyncConnection, table: str, rows: Sequence[Row]) -> int:
    """Insert rows into `observations` or `quarantined_readings`; returns rows new to the table.

    The caller owns the transaction (one per batch).
    """
    if table not in ("observations", "quarantined_readings"):
        raise ValueError(f"not a reading table: {table}")
    stage = f"stage_{table}"
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    async with conn.cursor().copy(f"COPY {stage} ({COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(TYPES)
        for row in rows:
            await copy.write_row(row)
    cur = await conn.execute(
        f"INSERT INTO {table} ({COLUMNS}) SELECT {COLUMNS} FROM {stage} ON CONFLICT DO NOTHING"  # noqa: S608 - table names are fixed above
    )
    return max(cur.rowcount, 0)
