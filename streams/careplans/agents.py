"""The care-plan agent: applies records of the compacted `rpm.care-plans.v1` topic to the
care-plan table, one event at a time (plans change rarely).

The table's changelog record goes to the partition of the event (the care-plan topic is
co-partitioned with the readings, both keyed by patient id, so the worker that judges a
patient's readings holds the patient's plan) and is acknowledged before the event is: the
record is written explicitly rather than through Faust's buffered `table[key] = value`, which
also keeps each changelog record alone in its produce request (see `state_store.seal` for why
that matters on the embedded broker).

A record that does not validate is dead-lettered and the patient keeps the previous plan; a
tombstone (no value) removes the plan, so the default applies again. The agent never lets
an exception escape.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from aiokafka.partitioner import murmur2

from core.logging import get_logger
from core.wire import CARE_PLANS
from streams import metrics
from streams.careplans.service import InvalidCarePlanError, PlanBook, validate_care_plan
from streams.dead_letters import dead_letter

log = get_logger("streams.careplans")

SEND_ATTEMPTS = 5
# (key, value or None for a tombstone, partition) -> acknowledged
PlanChangelogSend = Callable[[bytes, bytes | None, int], Awaitable[object]]


def default_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, Java client compatible) gives a key."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


async def apply_care_plans(
    stream: Any,
    data: MutableMapping[bytes, bytes],
    send_changelog: PlanChangelogSend,
    book: PlanBook,
    rejected_topic: Any,
) -> AsyncIterator[str]:
    """Body of the care-plan agent; yields the outcome of each record."""
    async for event in stream.events():
        key: bytes | None = event.key
        value: bytes | None = event.value
        partition: int = event.message.partition
        try:
            outcome = await _apply(partition, key, value, data, send_changelog, book)
        except InvalidCarePlanError as exc:
            outcome = "invalid"
            log.warning("care plan refused", error=str(exc))
            try:
                payload = (value or b"").decode("utf-8", "replace")
                await rejected_topic.send(
                    value=dead_letter("invalid_care_plan", str(exc), payload, topic=CARE_PLANS.name)
                )
            except Exception:
                log.exception("could not dead-letter a care plan")
        except asyncio.CancelledError:
            raise
        except Exception:
            outcome = "failed"
            log.exception("care plan record failed")
        metrics.CARE_PLANS.labels(outcome=outcome).inc()
        yield outcome


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
        await _send(send_changelog, key, None, partition)
        return "removed"
    plan = validate_care_plan(key, value)
    assert key is not None  # validate_care_plan refuses a missing key
    data[key] = value
    book.forget(plan.patient_id)
    await _send(send_changelog, key, value, partition)
    return "applied"


async def _send(send_changelog: PlanChangelogSend, key: bytes, value: bytes | None, partition: int) -> None:
    for attempt in range(1, SEND_ATTEMPTS + 1):
        try:
            await send_changelog(key, value, partition)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if attempt == SEND_ATTEMPTS:
                raise
            log.warning("care-plan changelog write failed; retrying", error=str(exc), attempt=attempt)
            await asyncio.sleep(min(5.0, 0.2 * 2 ** (attempt - 1)))
