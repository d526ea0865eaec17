"""Turning Kafka records into rows, and keeping the database writer alive.

A batch is written in one transaction. A database outage stalls the batch (retried until the
database is back, reconnecting) so that nothing is acknowledged to Kafka before it is stored;
so does a database that refuses the worker's login or lacks a table (a deployment to fix, not
a fault of any row).
A record that cannot be decoded is dead-lettered `undecodable_record`; when the database
refuses the batch (or writing it fails in any other way), the rows are written one by one and
each row the database refuses is dead-lettered `storage_refused` (any other failure of a row:
`internal_error`), so a bad reading never costs its valid neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus

from core.logging import get_logger
from core.retry import DATABASE_DOWN, until_done
from core.supervision import error_detail
from core.wire import ReadingBatch
from streams.records import Decode, Source, UndecodableRecordError, decode_record
from streams.storage.repository import Row, store_rows

log = get_logger("streams.storage")

# The data, not the database, is at fault.
DATA_REFUSED = (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError)
# The database refuses the worker itself (its login's grants, a schema not migrated): no row is at
# fault, so nothing is dead-lettered; the batch waits, like in an outage, until it is fixed.
MISCONFIGURED = (
    psycopg.errors.InsufficientPrivilege,
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,
)
WAIT_FOR = (*DATABASE_DOWN, *MISCONFIGURED)


@dataclass(slots=True)
class DecodedBatch:
    observations: list[Row] = field(default_factory=list)
    quarantined: list[Row] = field(default_factory=list)
    # the record each row came from (its raw value; its batch alone when the record holds
    # several patients' batches), by table
    observation_sources: list[Source] = field(default_factory=list)
    quarantined_sources: list[Source] = field(default_factory=list)
    batches: list[ReadingBatch] = field(default_factory=list)
    undecodable: list[tuple[bytes | None, str]] = field(default_factory=list)


@dataclass(slots=True)
class Refused:
    """A row not stored: the record it came from, the reason code and what went wrong."""

    source: bytes
    reason: str
    detail: str


def decode_records(values: Sequence[bytes | None], decode: Decode = decode_record) -> DecodedBatch:
    out = DecodedBatch()
    for raw in values:
        try:
            batches = decode(raw)
        except UndecodableRecordError as exc:
            out.undecodable.append((raw, str(exc)))
            continue
        assert raw is not None  # decode_record refuses a tombstone
        for batch in batches:
            out.batches.append(batch)
            source = Source(raw, batches, batch)
            rows, sources = (
                (out.quarantined, out.quarantined_sources)
                if batch.quarantined
                else (out.observations, out.observation_sources)
            )
            for i, r in enumerate(batch.readings):
                rows.append(
                    (
                        batch.patient_id,
                        batch.device_id,
                        r.metric,
                        r.ts,
                        r.value,
                        batch.received_at,
                        batch.seq_of(i),
                        r.dose_id,
                    )
                )
                sources.append(source)
    return out


class StorageWriter:
    """Owns one database connection and writes batches, waiting out outages."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: AsyncConnection | None = None

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _connection(self) -> AsyncConnection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await AsyncConnection.connect(self._url, connect_timeout=5)
        return self._conn

    async def _attempt(self, tables: Sequence[tuple[str, Sequence[Row]]]) -> int:
        """One transaction; a database that is away closes the connection (reconnect next time)."""
        try:
            conn = await self._connection()
            inserted = 0
            async with conn.transaction():
                for table, rows in tables:
                    if rows:
                        stored = await store_rows(conn, table, rows)
                        inserted += stored if table == "observations" else 0
            return inserted
        except DATABASE_DOWN as exc:
            log.warning("database unavailable; the batch waits", error=str(exc))
            await self.close()
            raise
        except MISCONFIGURED as exc:
            log.error("the database refuses the worker (grants or schema); the batch waits", error=str(exc))
            raise
        except Exception:
            # Whatever failed, the next attempt starts from a clean connection.
            if self._conn is not None and self._conn.info.transaction_status != TransactionStatus.IDLE:
                await self.close()
            raise

    async def _store(self, tables: Sequence[tuple[str, Sequence[Row]]]) -> int:
        return await until_done(WAIT_FOR)(self._attempt, tables)

    async def write(self, batch: DecodedBatch) -> tuple[int, list[Refused]]:
        """Store a decoded batch; returns (rows newly inserted, rows refused)."""
        try:
            return await self._store(
                [("observations", batch.observations), ("quarantined_readings", batch.quarantined)]
            ), []
        except DATA_REFUSED as exc:
            log.warning("batch refused by the database; storing row by row", error=str(exc))
        except Exception as exc:
            # Not an outage (retried above) and not the database's verdict: a row it cannot even
            # be sent (e.g. text that is not valid Unicode). Find it.
            log.warning("batch could not be written; storing row by row", error=error_detail(exc))
        return await self._write_rows_one_by_one(batch)

    async def _write_rows_one_by_one(self, batch: DecodedBatch) -> tuple[int, list[Refused]]:
        inserted = 0
        refused: list[Refused] = []
        for table, rows, sources in (
            ("observations", batch.observations, batch.observation_sources),
            ("quarantined_readings", batch.quarantined, batch.quarantined_sources),
        ):
            for row, source in zip(rows, sources, strict=True):
                which = f"reading {row[2]!r} at {row[3].isoformat()}"
                try:
                    inserted += await self._store([(table, [row])])
                except DATA_REFUSED as exc:
                    refused.append(Refused(source.value(), "storage_refused", f"{which}: {exc}"))
                except Exception as exc:
                    refused.append(Refused(source.value(), "internal_error", f"{which}: {error_detail(exc)}"))
        return inserted, refused
