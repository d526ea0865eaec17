"""The detection lane and timer: thin wrappers around `DetectionPipeline`.

The lane gets batches of events of `rpm.readings.v1` from the fan-out (`streams.fanout`),
which acknowledges them only after this lane (and the others) finished with them, i.e. after
their detections were published and the detector state saved. It never lets an exception
escape (the fan-out would end the process): a batch that raises is split down to the record
that raises, which is retried a few times and then dead-lettered `internal_error`
(`streams.dead_letters.each_or_dead_letter`); its neighbours are judged as usual.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from core.logging import get_logger
from core.wire import READINGS
from streams.dead_letters import DeadLetters, each_or_dead_letter
from streams.detection.pipeline import DetectionPipeline, partition_is_current

log = get_logger("streams.detection")


def detection_lane(
    pipeline: DetectionPipeline, dead_letters: DeadLetters
) -> Callable[[Sequence[Any]], Awaitable[None]]:
    """The lane handler: events of `rpm.readings.v1` through the detectors."""

    async def handle(events: Sequence[Any]) -> None:
        records = [(e.message.partition, e.message.offset, e.value) for e in events]
        await each_or_dead_letter("detection", records, pipeline.process, lambda r: r[2], dead_letters)

    return handle


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
