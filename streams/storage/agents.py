"""The storage agent: a thin wrapper that takes batches of reading records from Kafka,
stores them, and dead-letters what cannot be stored. It never lets an exception escape:
Faust would acknowledge the batch anyway and the readings would be lost.

Offsets: `Stream.take` acknowledges a batch's events only after the loop body finished
with it, i.e. after the transaction committed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from core.logging import get_logger
from core.wire import REJECTED, RejectedMessage, encode
from streams import metrics
from streams.storage.service import StorageWriter, decode_records

log = get_logger("streams.storage")

UNEXPECTED_ERROR_RETRIES = 3


def dead_letter(reason: str, detail: str, payload: str) -> bytes:
    return encode(
        RejectedMessage(
            reason=reason,
            detail=detail[:500],
            topic="rpm.readings.v1",
            device_id=None,
            received_at=datetime.now(UTC),
            payload=payload[:4096],
            payload_size=len(payload),
        )
    )


async def store_stream(
    stream: Any, writer: StorageWriter, rejected_topic: Any, batch_max: int, within_s: float
) -> AsyncIterator[int]:
    """Body of the storage agent; yields the count stored per batch (for tests and metrics)."""
    async for values in stream.take(batch_max, within=within_s):
        stored = await _store_batch(values, writer, rejected_topic)
        yield stored


async def _store_batch(values: Sequence[bytes], writer: StorageWriter, rejected_topic: Any) -> int:
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


__all__ = ["REJECTED", "store_stream"]
