"""The detection lane and timer: thin wrappers around `DetectionPipeline`.

The lane gets batches of events of `rpm.readings.v1` from the fan-out (`streams.fanout`),
which acknowledges them only after this lane (and the others) finished with them, i.e. after
their detections were published and the detector state saved. It never lets an exception
escape (the records would be acknowledged anyway and never judged): a failed batch is retried
with backoff a bounded number of times, then its records are dead-lettered with the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from core.logging import get_logger
from core.wire import READINGS
from streams import metrics
from streams.dead_letters import dead_letter
from streams.detection.pipeline import DetectionPipeline, partition_is_current

log = get_logger("streams.detection")

BATCH_ATTEMPTS = 3


def detection_lane(
    pipeline: DetectionPipeline, send_dead_letter: Callable[[bytes], Awaitable[object]]
) -> Callable[[Sequence[Any]], Awaitable[int]]:
    """The lane handler: events of `rpm.readings.v1` -> detections published."""

    async def handle(events: Sequence[Any]) -> int:
        records = [(e.message.partition, e.message.offset, e.value) for e in events]
        return await detect_batch(records, pipeline, send_dead_letter)

    return handle


async def detect_batch(
    records: list[tuple[int, int, bytes]],
    pipeline: DetectionPipeline,
    send_dead_letter: Callable[[bytes], Awaitable[object]],
) -> int:
    for attempt in range(1, BATCH_ATTEMPTS + 1):
        try:
            return await pipeline.process(records)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("detection batch failed", attempt=attempt, error=str(exc))
            await asyncio.sleep(0.5 * attempt)
    # Bounded retries exhausted: the records, with the error, go to the dead-letter topic.
    for _, _, raw in records:
        metrics.DEAD_LETTERS.labels(reason="detection_failed").inc()
        try:
            await send_dead_letter(dead_letter("detection_failed", "retries exhausted", raw.decode("utf-8", "replace")))
        except Exception:
            log.exception("could not dead-letter a record")
    return 0


async def judge_due(app: Any, pipeline: DetectionPipeline, guard_s: float) -> int:
    """One timer pass over the partitions this worker owns and has caught up with."""
    if app.rebalancing or app.in_recovery or app.consumer is None:
        return 0  # tables may be half recovered; the next pass will do
    now = datetime.now(UTC)
    guard = timedelta(seconds=guard_s)
    current: set[int] = set()
    for tp in app.consumer.assignment():
        if tp.topic != READINGS.name:
            continue
        last = pipeline.progress.get(tp.partition)
        position = None
        if last is None:
            try:
                position = await app.consumer.position(tp)
            except Exception:
                position = None
        highwater = app.consumer.highwater(tp)
        if partition_is_current(last, highwater, position, now, guard):
            current.add(tp.partition)
    if not current:
        return 0
    try:
        return await pipeline.run_due(now, frozenset(current))
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("timer pass failed")
        return 0
