"""The storage lane: stores batches of reading records and dead-letters what cannot be
stored. It never lets an exception escape: the fan-out would end the process.

Barrier per record: records that do not decode and rows the database refuses are
dead-lettered with their own reason inside `store_records`; anything else a batch raises
(a bug, an input nobody foresaw) is isolated to its record by `each_or_dead_letter` and
dead-lettered `internal_error`. A database outage is not a failure of any record: it is
waited out (`StorageWriter`), and nothing is acknowledged meanwhile.

Offsets: the fan-out (`streams.fanout`) acknowledges a batch's events only after this lane
(and the others) finished with them, i.e. after the transaction committed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from core.logging import get_logger
from streams import metrics
from streams.dead_letters import DeadLetters, each_or_dead_letter
from streams.records import Decode, decode_record
from streams.storage.service import StorageWriter, decode_records

log = get_logger("streams.storage")


def storage_lane(
    writer: StorageWriter, dead_letters: DeadLetters, decode: Decode = decode_record
) -> Callable[[Sequence[Any]], Awaitable[None]]:
    """The lane handler: events of `rpm.readings.v1` stored (or dead-lettered)."""

    async def handle(events: Sequence[Any]) -> None:
        values: list[bytes | None] = [e.value for e in events]
        metrics.RECORDS.inc(len(values))

        async def run(part: Sequence[bytes | None]) -> int:
            return await store_records(part, writer, dead_letters, decode)

        await each_or_dead_letter("storage", values, run, lambda raw: raw, dead_letters)

    return handle


async def store_records(
    values: Sequence[bytes | None], writer: StorageWriter, dead_letters: DeadLetters, decode: Decode = decode_record
) -> int:
    """Store the readings of these records; returns readings newly stored."""
    started = time.monotonic()
    decoded = decode_records(values, decode)
    for raw, error in decoded.undecodable:
        await dead_letters.send("undecodable_record", error, raw)
    inserted, refused = await writer.write(decoded)
    for row in refused:
        await dead_letters.send(row.reason, row.detail, row.source)
    total = len(decoded.observations)
    metrics.STORED.inc(inserted)
    metrics.REPLAYED.inc(max(0, total - inserted - len(refused)))
    metrics.BATCH_SECONDS.observe(time.monotonic() - started)
    now = datetime.now(UTC)
    for batch in decoded.batches:
        metrics.STORAGE_LAG.observe(max(0.0, (now - batch.received_at).total_seconds()))
        for reading in batch.readings:
            metrics.END_TO_END_LATENCY.observe(max(0.0, (now - reading.ts).total_seconds()))
    return inserted
