"""What the worker accepts as a record of `rpm.device-events.v1`, and what it does with one.

The bridge writes only events it built itself, but anything can be written to a Kafka topic.
A record is a device event if it is JSON of `DeviceEvent` (UTF-8, types as declared), its
`device_id` could be a row of `devices` (the table's own pattern: an id with a NUL character
could not even be sent to the database), its `at` carries a zone and lies between 2000 and
the wire contract's future tolerance ahead of the worker's clock (the bridge stamps it with
its own clock; an event dated years ahead would otherwise freeze the stored battery, since
only a newer report replaces it), and a battery event has a battery level between 0 and 1
(the column's CHECK). Anything else is `InvalidDeviceEventError`, dead-lettered
`invalid_device_event` with the message.

Only battery events change anything for now; the other kinds are counted and left alone.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import msgspec

from core.wire import FUTURE_TOLERANCE, DeviceEvent, device_event_decoder

EARLIEST_AT: Final = datetime(2000, 1, 1, tzinfo=UTC)
# The CHECK of devices.id (core/migrations/0001).
DEVICE_ID: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class InvalidDeviceEventError(ValueError):
    """A record that is not a device event the worker can apply; the message says why."""


@dataclass(frozen=True, slots=True)
class BatteryReport:
    """A device's battery level (0..1) as reported at `at`."""

    device_id: str
    battery: float
    at: datetime


def decode_device_event(raw: bytes | None) -> DeviceEvent:
    if raw is None:
        raise InvalidDeviceEventError("no value (a tombstone)")
    try:
        event = device_event_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidDeviceEventError(f"not a device event: {exc}") from exc
    except (UnicodeError, ValueError, TypeError, RecursionError) as exc:
        # msgspec raises UnicodeDecodeError for invalid UTF-8 inside a string
        raise InvalidDeviceEventError(f"not a device event: {type(exc).__name__}: {exc}") from exc
    if not DEVICE_ID.fullmatch(event.device_id):
        raise InvalidDeviceEventError(f"device_id {event.device_id[:80]!r} is not a device id")
    if event.at.tzinfo is None or event.at.utcoffset() is None:
        raise InvalidDeviceEventError("at has no time zone")
    if event.at < EARLIEST_AT or event.at - datetime.now(UTC) > FUTURE_TOLERANCE:
        raise InvalidDeviceEventError(f"at {event.at.isoformat()} is before 2000 or in the future")
    if event.kind == "battery":
        if event.battery is None:
            raise InvalidDeviceEventError("battery event without a battery level")
        if not (math.isfinite(event.battery) and 0.0 <= event.battery <= 1.0):
            raise InvalidDeviceEventError(f"battery {event.battery!r} is not between 0 and 1")
    return event


def battery_report(event: DeviceEvent) -> BatteryReport | None:
    """What a decoded event asks to store: a battery report, or nothing (other kinds)."""
    if event.kind != "battery" or event.battery is None:
        return None
    return BatteryReport(event.device_id, event.battery, event.at)
