"""Dead letters of the worker, and the barrier that turns any failure of one record into one.

What the worker cannot process goes to `rpm.rejected.v1` with a reason code and the error,
never silently dropped (CONVENTIONS.md). `DeadLetters` is the only way the worker writes one:
it counts it (`rpm_streams_dead_letters_total{reason}`) and sends it until Kafka acknowledges
it (the record it replaces is acknowledged only after that, so a broker outage stalls the
worker instead of losing the record).

`each_or_dead_letter` is the barrier per record of the lanes: a batch is run as a whole; if
that raises anything but a cancellation, it is split in halves and each half run again, down
to single records, which are tried `attempts` times (stamina backoff) and then dead-lettered
`internal_error` with the exception's type and message (capped). Order is kept (the first
half before the second), valid neighbours of a poison record are processed, and the stream
goes on. Work the batch did before it raised is done again; every step of the lanes is
idempotent (`ON CONFLICT DO NOTHING`; detectors skip readings their saved state has seen;
detections carry deterministic ids).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Final, TypeVar

from core.dead_letters import INTERNAL_ERROR, payload_text
from core.dead_letters import dead_letter as core_dead_letter
from core.logging import get_logger
from core.retry import KAFKA_DOWN, bounded, until_done
from core.supervision import error_detail, failure
from core.wire import READINGS
from streams import metrics

log = get_logger("streams.dead_letters")


# Every reason the worker writes (docs/operations.md explains each).
REASONS: Final = frozenset(
    {
        "undecodable_record",
        "storage_refused",
        "detection_refused",
        "detection_publish_failed",
        "invalid_care_plan",
        "invalid_device_event",
        "internal_error",
    }
)

Send = Callable[[bytes], Awaitable[object]]  # an encoded dead letter -> acknowledged by Kafka
R = TypeVar("R")


def dead_letter(reason: str, detail: str, payload: bytes | str | None, *, topic: str = READINGS.name) -> bytes:
    """An encoded `RejectedMessage` for a record (or row) of `topic` the worker gave up on."""
    return core_dead_letter(reason, detail, payload, topic=topic)


class DeadLetters:
    """Writes the worker's dead letters; returns once Kafka acknowledged them."""

    def __init__(self, send: Send) -> None:
        self._send = send

    async def send(self, reason: str, detail: str, payload: bytes | str | None, *, topic: str = READINGS.name) -> None:
        value = dead_letter(reason, detail, payload, topic=topic)
        await until_done(KAFKA_DOWN)(self._send, value)
        metrics.DEAD_LETTERS.labels(reason=reason).inc()

    async def send_all(
        self, reason: str, detail: str, payloads: Iterable[bytes | str | None], *, topic: str = READINGS.name
    ) -> None:
        for payload in payloads:
            await self.send(reason, detail, payload, topic=topic)


async def each_or_dead_letter(
    what: str,
    records: Sequence[R],
    run: Callable[[Sequence[R]], Awaitable[object]],
    payload_of: Callable[[R], bytes | str | None],
    dead_letters: DeadLetters,
    *,
    attempts: int = 3,
    topic: str = READINGS.name,
) -> None:
    """Run `records` (as one batch if possible); a record that keeps raising is dead-lettered."""
    if not records:
        return
    if len(records) == 1:
        try:
            await bounded((Exception,), attempts)(run, records)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error(f"{what}: a record failed; dead-lettered", **failure(exc))
            await dead_letters.send(INTERNAL_ERROR, f"{what}: {error_detail(exc)}", payload_of(records[0]), topic=topic)
        return
    try:
        await run(records)
        return
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning(f"{what}: a batch failed; splitting it", records=len(records), error=error_detail(exc))
    middle = len(records) // 2
    await each_or_dead_letter(what, records[:middle], run, payload_of, dead_letters, attempts=attempts, topic=topic)
    await each_or_dead_letter(what, records[middle:], run, payload_of, dead_letters, attempts=attempts, topic=topic)


__all__ = ["INTERNAL_ERROR", "REASONS", "DeadLetters", "dead_letter", "each_or_dead_letter", "payload_text"]
