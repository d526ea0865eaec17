"""The storage lane: stores batches of reading records and dead-letters what cannot be
stored. It never lets an exception escape: the records would be acknowledged anyway and
the readings lost.

Offsets: the fan-out (`streams.fanout`) acknowledges a batch's events only after this lane
(and the others) finished with them, i.e. after the transaction committed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from core.logging import get_logger
from streams import metrics
from streams.dead_letters import dead_letter
from streams.storage.service import StorageWriter, decode_records

log = get_logger("streams.storage")

UNEXPECTED_ERROR_RETRIES = 3


def storage_lane(writer: StorageWriter, rejected_topic: Any) -> Callable[[Sequence[Any]], Awaitable[int]]:
    """The lane handler: events of `rpm.readings.v1` -> readings newly stored."""

    async def handle(events: Sequence[Any]) -> int:
        return await store_batch([e.value for e in events], writer, rejected_topic)

    return handle


async def store_batch(values: Sequence[bytes], writer: StorageWriter, rejected_topic: Any) -> int:
    started = time.monotonic()
    metrics.RECORDS.inc(len(values))
    for attempt in range(1, UNEXPECTED_ERROR_RETRIES + 1):
        try:
            decoded = decode_records(values)
            for raw, error in decoded.undecodable:
                metrics.DEAD_LETTERS.labels(reason="undecodable_record").inc()
                await rejected_topic.send(
                    value=dead_letter("undecodable_record", error, raw.decode("utf-8", "replace"))
                )
            inserted, refused = await writer.write(decoded)
            for row, error in refused:
                metrics.DEAD_LETTERS.labels(reason="storage_refused").inc()
                await rejected_topic.send(value=dead_letter("storage_refused", error, repr(row)))
            total = len(decoded.observations)
            metrics.STORED.inc(inserted)
            metrics.REPLAYED.inc(max(0, total - inserted - len(refused)))
            metrics.BATCH_SECONDS.observe(time.monotonic() - started)
            now = datetime.now(UTC)
            for batch in decoded.batches:
                metrics.STORAGE_LAG.observe(max(0.0, (now - batch.received_at).total_seconds()))
            return inserted
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("storage batch failed", attempt=attempt, error=str(exc))
            await asyncio.sleep(0.5 * attempt)
    # Bounded retries exhausted: keep the records, with the error, on the dead-letter topic.
    for raw in values:
        metrics.DEAD_LETTERS.labels(reason="storage_failed").inc()
        try:
            await rejected_topic.send(
                value=dead_letter("storage_failed", "retries exhausted", raw.decode("utf-8", "replace"))
            )
        except Exception:
            log.exception("could not dead-letter a record")
    return 0
