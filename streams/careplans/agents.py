"""The care-plan agent: applies records of the compacted `rpm.care-plans.v1` topic to the
care-plan table, one event at a time (plans change rarely).

The table's changelog record goes to the partition of the event (the care-plan topic is
co-partitioned with the readings, both keyed by patient id, so the worker that judges a
patient's readings holds the patient's plan) and is acknowledged before the event is: the
record is written explicitly rather than through Faust's buffered `table[key] = value`, which
also keeps each changelog record alone in its produce request (see `state_store.seal` for why
that matters on the embedded broker).

A record that does not validate is dead-lettered and the patient keeps the previous plan; a
tombstone (no value) removes the plan, so the default applies again. Barrier per record:
whatever else one record raises is dead-lettered `internal_error` and the agent goes on; a
changelog write Kafka does not take is retried until it does (the record is not acknowledged
meanwhile).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from core.logging import get_logger
from core.retry import KAFKA_DOWN, until_done
from core.supervision import error_detail, failure, safe_text
from core.wire import CARE_PLANS, default_partition
from streams import metrics
from streams.careplans.service import InvalidCarePlanError, PlanBook, validate_care_plan
from streams.dead_letters import INTERNAL_ERROR, DeadLetters

log = get_logger("streams.careplans")

# (key, value or None for a tombstone, partition) -> acknowledged
PlanChangelogSend = Callable[[bytes, bytes | None, int], Awaitable[object]]


async def apply_care_plans(
    stream: Any,
    data: MutableMapping[bytes, bytes],
    send_changelog: PlanChangelogSend,
    book: PlanBook,
    dead_letters: DeadLetters,
) -> AsyncIterator[tuple[Any, str]]:
    """Body of the care-plan agent; yields each event with its outcome once it is done."""
    async for event in stream.events():
        yield event, await apply_one(event, data, send_changelog, book, dead_letters)


async def apply_one(
    event: Any,
    data: MutableMapping[bytes, bytes],
    send_changelog: PlanChangelogSend,
    book: PlanBook,
    dead_letters: DeadLetters,
) -> str:
    """One record of `rpm.care-plans.v1`, behind the barrier: whatever it raises is a dead letter."""
    key: bytes | None = event.key
    value: bytes | None = event.value
    try:
        outcome = await _apply(event.message.partition, key, value, data, send_changelog, book)
    except asyncio.CancelledError:
        raise
    except InvalidCarePlanError as exc:
        outcome = "invalid"
        log.warning("care plan refused", error=safe_text(str(exc)))
        await dead_letters.send("invalid_care_plan", str(exc), value, topic=CARE_PLANS.name)
    except Exception as exc:
        outcome = "failed"
        log.error("care plan record failed; dead-lettered", **failure(exc))
        await dead_letters.send(INTERNAL_ERROR, f"care plan: {error_detail(exc)}", value, topic=CARE_PLANS.name)
    metrics.CARE_PLANS.labels(outcome=outcome).inc()
    return outcome


async def _apply(
    partition: int,
    key: bytes | None,
    value: bytes | None,
    data: MutableMapping[bytes, bytes],
    send_changelog: PlanChangelogSend,
    book: PlanBook,
) -> str:
    if key and default_partition(key, CARE_PLANS.partitions) != partition:
        # Readings are keyed the same way; a plan on another partition may live on another worker.
        log.warning(
            "care plan on an unexpected partition: producer not using the default partitioner", partition=partition
        )
    if value is None:
        if not key:
            return "ignored"
        data.pop(key, None)
        book.forget(key.decode("utf-8", "replace"))
        await until_done(KAFKA_DOWN)(send_changelog, key, None, partition)
        return "removed"
    plan = validate_care_plan(key, value)
    assert key is not None  # validate_care_plan refuses a missing key
    # The changelog first: a plan in the table but not in its changelog would vanish on recovery.
    await until_done(KAFKA_DOWN)(send_changelog, key, value, partition)
    data[key] = value
    book.forget(plan.patient_id)
    return "applied"
