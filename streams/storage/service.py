"""Turning Kafka records into rows, and keeping the database writer alive.

A batch is written in one transaction. A database outage stalls the batch (retry with
backoff, reconnecting) so that nothing is acknowledged to Kafka before it is stored; a
record that cannot be decoded, or a row the database refuses, goes to the dead letter
topic with the error instead of being lost or blocking the partition forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
import psycopg
from psycopg import AsyncConnection

from core.logging import get_logger
from core.wire import ReadingBatch, batch_decoder
from streams.storage.repository import Row, store_rows

log = get_logger("streams.storage")


@dataclass(slots=True)
class DecodedBatch:
    observations: list[Row] = field(default_factory=list)
    quarantined: list[Row] = field(default_factory=list)
    batches: list[ReadingBatch] = field(default_factory=list)
    undecodable: list[tuple[bytes, str]] = field(default_factory=list)


def decode_records(values: Sequence[bytes]) -> DecodedBatch:
    out = DecodedBatch()
    for raw in values:
        try:
            batch = batch_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            out.undecodable.append((raw, str(exc)))
            continue
        out.batches.append(batch)
        target = out.quarantined if batch.quarantined else out.observations
        for r in batch.readings:
            target.append(
                (batch.patient_id, batch.device_id, r.metric, r.ts, r.value, batch.received_at, batch.seq, r.dose_id)
            )
    return out


class StorageWriter:
    """Owns one database connection and writes batches, waiting out outages."""

    def __init__(self, url: str, max_backoff_s: float = 5.0) -> None:
        self._url = url
        self._conn: AsyncConnection | None = None
        self._max_backoff = max_backoff_s

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _connection(self) -> AsyncConnection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await AsyncConnection.connect(self._url)
        return self._conn

    async def write(self, batch: DecodedBatch) -> tuple[int, list[tuple[Row, str]]]:
        """Store a decoded batch; returns (rows inserted, rows refused with the error)."""
        attempt = 0
        while True:
            try:
                conn = await self._connection()
                async with conn.transaction():
                    inserted = await store_rows(conn, "observations", batch.observations) if batch.observations else 0
                    if batch.quarantined:
                        await store_rows(conn, "quarantined_readings", batch.quarantined)
                return inserted, []
            except (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError) as exc:
                # The data, not the database, is at fault: isolate the rows it refuses.
                log.warning("batch refused by the database; storing row by row", error=str(exc))
                return await self._write_rows_one_by_one(batch)
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                attempt += 1
                await self.close()
                delay = min(self._max_backoff, 0.1 * 2 ** min(attempt, 6))
                log.warning("database unavailable; batch waits", error=str(exc), attempt=attempt, retry_in=delay)
                await asyncio.sleep(delay)

    async def _write_rows_one_by_one(self, batch: DecodedBatch) -> tuple[int, list[tuple[Row, str]]]:
        inserted = 0
        refused: list[tuple[Row, str]] = []
        conn = await self._connection()
        for table, rows in (("observations", batch.observations), ("quarantined_readings", batch.quarantined)):
            for row in rows:
                try:
                    async with conn.transaction():
                        stored = await store_rows(conn, table, [row])
                    if table == "observations":
                        inserted += stored
                except (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError) as exc:
                    refused.append((row, str(exc)))
        return inserted, refused
