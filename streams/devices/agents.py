"""The device-events agent: applies records of `rpm.device-events.v1` to the `devices` table,
one event at a time (a few per device per day: battery steps, status changes, seq gaps).

Barrier per record, as in the care-plan agent: a record that is not a device event is
dead-lettered `invalid_device_event`; whatever else one record raises is dead-lettered
`internal_error`, and the agent goes on. A database outage is not a failure of any record:
`DeviceBatteries` waits it out and the event is not acknowledged meanwhile (Faust
acknowledges an event of `stream.events()` when the next one is asked for). Each event is
counted in `rpm_streams_device_events_total{kind, outcome}`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Final

from core.logging import get_logger
from core.supervision import error_detail, failure, safe_text
from core.wire import DEVICE_EVENTS
from streams import metrics
from streams.dead_letters import INTERNAL_ERROR, DeadLetters
from streams.devices.repository import DeviceBatteries
from streams.devices.service import InvalidDeviceEventError, battery_report, decode_device_event

log = get_logger("streams.devices")

INVALID_DEVICE_EVENT: Final = "invalid_device_event"


async def apply_device_events(
    stream: Any, batteries: DeviceBatteries, dead_letters: DeadLetters
) -> AsyncIterator[tuple[Any, str]]:
    """Body of the device-events agent; yields each event with its outcome once it is done."""
    async for event in stream.events():
        yield event, await apply_one(event.value, batteries, dead_letters)


async def apply_one(value: bytes | None, batteries: DeviceBatteries, dead_letters: DeadLetters) -> str:
    """One record of `rpm.device-events.v1`, behind the barrier: whatever it raises is a dead letter."""
    kind = "unknown"  # until the record decodes
    try:
        event = decode_device_event(value)
        kind = event.kind
        report = battery_report(event)
        outcome: str = "ignored" if report is None else await batteries.record(report)
        if outcome == "unknown_device":
            log.info("battery of a device the platform does not know; ignored", device_id=event.device_id)
    except asyncio.CancelledError:
        raise
    except InvalidDeviceEventError as exc:
        outcome = "invalid"
        log.warning("device event refused", error=safe_text(str(exc)))
        await dead_letters.send(INVALID_DEVICE_EVENT, str(exc), value, topic=DEVICE_EVENTS.name)
    except Exception as exc:
        outcome = "failed"
        log.error("device event failed; dead-lettered", **failure(exc))
        await dead_letters.send(INTERNAL_ERROR, f"device event: {error_detail(exc)}", value, topic=DEVICE_EVENTS.name)
    metrics.DEVICE_EVENTS.labels(kind=kind, outcome=outcome).inc()
    return outcome
