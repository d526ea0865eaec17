"""Validation of device messages: one pass from raw MQTT bytes to normalised readings.

Pure: no I/O. The device registry is handed in as a snapshot. Every input either yields
accepted readings or a rejection with a stable reason code; readings of one message are
judged one by one, so a single bad reading does not cost its neighbours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final, Protocol

import msgspec

from core.catalogue import CATALOGUE
from core.wire import (
    MAX_PAYLOAD_BYTES,
    MAX_READINGS_PER_MESSAGE,
    SCHEMA_VERSION,
    DevicePayload,
    Reading,
    payload_decoder,
)

FUTURE_TOLERANCE: Final = timedelta(minutes=5)
QUARANTINE_AGE: Final = timedelta(days=7)


class Reason(StrEnum):
    """Stable dead-letter reason codes (documented in docs/operations.md)."""

    OVERSIZE = "oversize"
    INVALID_JSON = "invalid_json"
    SCHEMA_INVALID = "schema_invalid"
    UNSUPPORTED_SCHEMA = "unsupported_schema"
    TOO_MANY_READINGS = "too_many_readings"
    DEVICE_MISMATCH = "device_mismatch"
    UNKNOWN_DEVICE = "unknown_device"
    DEVICE_REVOKED = "device_revoked"
    UNBOUND_DEVICE = "unbound_device"
    NO_CONSENT = "no_consent"
    UNKNOWN_METRIC = "unknown_metric"
    UNKNOWN_UNIT = "unknown_unit"
    NOT_FINITE = "not_finite"
    IMPLAUSIBLE = "implausible"
    MISSING_DOSE_ID = "missing_dose_id"
    FUTURE_TIMESTAMP = "future_timestamp"
    DUPLICATE_READING = "duplicate_reading"


@dataclass(frozen=True, slots=True)
class Binding:
    patient_id: str
    valid_from: datetime
    valid_to: datetime | None

    def covers(self, ts: datetime) -> bool:
        return self.valid_from <= ts and (self.valid_to is None or ts < self.valid_to)


class Registry(Protocol):
    """What validation needs to know about devices and patients."""

    def device_known(self, device_id: str) -> bool: ...

    def device_revoked(self, device_id: str) -> bool: ...

    def bindings(self, device_id: str) -> list[Binding]: ...

    def enrolled_at(self, patient_id: str) -> datetime | None: ...

    def has_consent(self, patient_id: str, at: datetime) -> bool: ...


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: Reason
    detail: str


@dataclass(slots=True)
class PatientReadings:
    """Accepted readings of one message for one patient; quarantined ones kept apart."""

    patient_id: str
    readings: list[Reading] = field(default_factory=list)
    quarantined: list[Reading] = field(default_factory=list)


@dataclass(slots=True)
class Outcome:
    """The verdict on one message."""

    device_id: str | None
    seq: int | None = None
    battery: float | None = None
    accepted: dict[str, PatientReadings] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def message_rejected(self) -> bool:
        return not self.accepted and bool(self.rejections)

    @property
    def accepted_count(self) -> int:
        return sum(len(p.readings) + len(p.quarantined) for p in self.accepted.values())


def _reject(device_id: str | None, reason: Reason, detail: str) -> Outcome:
    return Outcome(device_id=device_id, rejections=[Rejection(reason, detail)])


def validate(topic_device_id: str, raw: bytes, received_at: datetime, registry: Registry) -> Outcome:
    """Judge one telemetry message published on `rpm/v1/devices/{topic_device_id}/telemetry`."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        return _reject(topic_device_id, Reason.OVERSIZE, f"{len(raw)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        msg = payload_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        text = str(exc)
        # JSON numbers beyond the float range (1e999) decode to infinity: not finite.
        reason = Reason.NOT_FINITE if text.startswith("Number out of range") else _schema_reason(raw)
        return _reject(topic_device_id, reason, text[:300])
    except msgspec.DecodeError as exc:
        return _reject(topic_device_id, Reason.INVALID_JSON, str(exc)[:300])
    return _validate_message(topic_device_id, msg, received_at, registry)


def _schema_reason(raw: bytes) -> Reason:
    # A message that is valid JSON but of another schema version deserves its own code.
    try:
        version = msgspec.json.decode(raw, type=dict).get("schema")
    except (msgspec.DecodeError, msgspec.ValidationError):
        return Reason.INVALID_JSON
    return Reason.SCHEMA_INVALID if version == SCHEMA_VERSION else Reason.UNSUPPORTED_SCHEMA


def _validate_message(device_id: str, msg: DevicePayload, received_at: datetime, registry: Registry) -> Outcome:
    if msg.schema != SCHEMA_VERSION:
        return _reject(device_id, Reason.UNSUPPORTED_SCHEMA, f"schema {msg.schema}, expected {SCHEMA_VERSION}")
    if msg.device_id != device_id:
        return _reject(device_id, Reason.DEVICE_MISMATCH, "payload device_id differs from the topic's")
    if len(msg.readings) > MAX_READINGS_PER_MESSAGE:
        return _reject(device_id, Reason.TOO_MANY_READINGS, f"{len(msg.readings)} > {MAX_READINGS_PER_MESSAGE}")
    if not registry.device_known(device_id):
        return _reject(device_id, Reason.UNKNOWN_DEVICE, "device is not provisioned")
    if registry.device_revoked(device_id):
        return _reject(device_id, Reason.DEVICE_REVOKED, "device was revoked")
    bindings = registry.bindings(device_id)
    if not bindings:
        return _reject(device_id, Reason.UNBOUND_DEVICE, "device is bound to no patient")

    outcome = Outcome(device_id=device_id, seq=msg.seq, battery=msg.battery)
    consent: dict[str, bool] = {}
    seen: set[tuple[str, datetime]] = set()
    for index, wire in enumerate(msg.readings):
        where = f"readings[{index}] ({wire.metric})"
        spec = CATALOGUE.get(wire.metric)
        if spec is None:
            outcome.rejections.append(Rejection(Reason.UNKNOWN_METRIC, f"{where}: unknown metric"))
            continue
        if not math.isfinite(wire.value):
            outcome.rejections.append(Rejection(Reason.NOT_FINITE, f"{where}: value is not finite"))
            continue
        value = spec.normalise(wire.value, wire.unit)
        if value is None:
            outcome.rejections.append(
                Rejection(Reason.UNKNOWN_UNIT, f"{where}: unit {wire.unit[:40]!r} is not accepted for {spec.name}")
            )
            continue
        if not spec.plausible(value):
            outcome.rejections.append(
                Rejection(Reason.IMPLAUSIBLE, f"{where}: {value:g} {spec.unit} outside {spec.low:g}-{spec.high:g}")
            )
            continue
        if spec.is_event and not wire.dose_id:
            outcome.rejections.append(Rejection(Reason.MISSING_DOSE_ID, f"{where}: dose event without dose_id"))
            continue
        if wire.ts - received_at > FUTURE_TOLERANCE:
            outcome.rejections.append(
                Rejection(Reason.FUTURE_TIMESTAMP, f"{where}: timestamp more than 5 min in the future")
            )
            continue
        binding = next((b for b in bindings if b.covers(wire.ts)), None)
        if binding is None:
            outcome.rejections.append(
                Rejection(Reason.UNBOUND_DEVICE, f"{where}: device bound to no patient at the reading's time")
            )
            continue
        patient_id = binding.patient_id
        if patient_id not in consent:
            consent[patient_id] = registry.has_consent(patient_id, received_at)
        if not consent[patient_id]:
            outcome.rejections.append(Rejection(Reason.NO_CONSENT, f"{where}: patient has no active consent"))
            continue
        key = (spec.name, wire.ts)
        if key in seen:
            outcome.rejections.append(Rejection(Reason.DUPLICATE_READING, f"{where}: same metric and time twice"))
            continue
        seen.add(key)
        reading = Reading(spec.name, value, wire.ts.astimezone(UTC), wire.dose_id)
        bucket = outcome.accepted.setdefault(patient_id, PatientReadings(patient_id))
        enrolled = registry.enrolled_at(patient_id)
        if received_at - wire.ts > QUARANTINE_AGE or (enrolled is not None and wire.ts < enrolled):
            bucket.quarantined.append(reading)
        else:
            bucket.readings.append(reading)
    return outcome
