"""Validation of device messages: one pass from raw MQTT bytes to normalised readings.

Pure: no I/O. The device registry is handed in as a snapshot. Every input either yields
accepted readings or a rejection with a stable reason code; readings of one message are
judged one by one, so a single bad reading does not cost its neighbours (ADR 0006).

Two decoders: the strict typed decoder takes every well-formed message in one pass; any
message it refuses is decoded again leniently (invalid UTF-8 replaced, NaN/Infinity
literals and huge numbers accepted as numbers, then the envelope and each reading checked
on their own), so the verdict names the one field that is wrong and keeps the rest.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Protocol

import msgspec

from core.catalogue import CATALOGUE
from core.wire import (
    FUTURE_TOLERANCE,
    MAX_PAYLOAD_BYTES,
    MAX_READING_AGE,
    MAX_READINGS_PER_MESSAGE,
    MAX_SEQ,
    SCHEMA_VERSION,
    AwareDatetime,
    Reading,
    WireReading,
    payload_decoder,
)

QUARANTINE_AGE: Final = timedelta(days=7)
MAX_DOSE_ID_CHARS: Final = 128
DETAIL_CAP: Final = 300
_ENVELOPE_FIELDS: Final = frozenset({"schema", "device_id", "seq", "sent_at", "readings", "battery"})


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
    OUTSIDE_BINDING = "outside_binding"
    TOO_OLD = "too_old"
    NO_CONSENT = "no_consent"
    UNKNOWN_METRIC = "unknown_metric"
    UNKNOWN_UNIT = "unknown_unit"
    NOT_FINITE = "not_finite"
    IMPLAUSIBLE = "implausible"
    MISSING_DOSE_ID = "missing_dose_id"
    FUTURE_TIMESTAMP = "future_timestamp"
    DUPLICATE_READING = "duplicate_reading"
    INTERNAL_ERROR = "internal_error"


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
class MessageOutcome:
    """The verdict on one device message (the bridge's boundary with devices)."""

    device_id: str | None
    seq: int | None = None
    battery: float | None = None
    # Identifies the message's readings (not its envelope): a redelivery has the same digest,
    # a device that reset its seq counter sends other readings under an old seq.
    digest: int = 0
    accepted: dict[str, PatientReadings] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def message_rejected(self) -> bool:
        """The message as a whole was refused (no reading of it was judged)."""
        return not self.accepted and bool(self.rejections)

    @property
    def accepted_count(self) -> int:
        return sum(len(p.readings) + len(p.quarantined) for p in self.accepted.values())


def _reject(device_id: str | None, reason: Reason, detail: str, seq: int | None = None) -> MessageOutcome:
    return MessageOutcome(device_id=device_id, seq=seq, rejections=[Rejection(reason, _printable(detail))])


def _printable(text: str, cap: int = DETAIL_CAP) -> str:
    """Text safe for a dead letter: valid UTF-8 (lone surrogates escaped), capped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:cap]


def validate(topic_device_id: str, raw: bytes, received_at: datetime, registry: Registry) -> MessageOutcome:
    """Judge one telemetry message published on `rpm/v1/devices/{topic_device_id}/telemetry`."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        return _reject(topic_device_id, Reason.OVERSIZE, f"{len(raw)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        msg = payload_decoder.decode(raw)
    except Exception:  # any refusal of the strict decoder (UnicodeDecodeError included)
        return _validate_lenient(topic_device_id, raw, received_at, registry)
    if msg.schema != SCHEMA_VERSION:
        return _reject(topic_device_id, Reason.UNSUPPORTED_SCHEMA, f"schema {msg.schema}, expected {SCHEMA_VERSION}")
    digest = hash(tuple((w.metric, w.value, w.unit, w.ts, w.dose_id) for w in msg.readings))
    envelope = MessageOutcome(device_id=topic_device_id, seq=msg.seq, battery=msg.battery, digest=digest)
    readings: list[tuple[int, WireReading | Rejection]] = list(enumerate(msg.readings))
    return _judge(topic_device_id, msg.device_id, envelope, readings, received_at, registry)


# --- the lenient path: one verdict per field ---------------------------------------------------
def _stamp(at: datetime | None) -> str:
    return "open" if at is None else f"{at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def _big_int(text: str) -> int | float:
    # Python refuses to parse integers of more than 4,300 digits; any number that long is
    # out of every range we accept, so it reads as infinity (not finite / out of range).
    return int(text) if len(text) <= 300 else math.inf


def _validate_lenient(device_id: str, raw: bytes, received_at: datetime, registry: Registry) -> MessageOutcome:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "replace")  # every invalid byte becomes U+FFFD in its own field
    try:
        doc = json.loads(text, parse_int=_big_int)
    except (ValueError, RecursionError) as exc:
        return _reject(device_id, Reason.INVALID_JSON, f"not JSON: {type(exc).__name__}: {exc}")
    if not isinstance(doc, dict):
        return _reject(device_id, Reason.SCHEMA_INVALID, f"expected a JSON object, got {type(doc).__name__}")
    schema = doc.get("schema")
    if schema != SCHEMA_VERSION or isinstance(schema, bool):
        reason = Reason.UNSUPPORTED_SCHEMA if isinstance(schema, int) and not isinstance(schema, bool) else None
        return _reject(device_id, reason or Reason.SCHEMA_INVALID, f"schema {schema!r}, expected {SCHEMA_VERSION}")
    seq = doc.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
        return _reject(device_id, Reason.SCHEMA_INVALID, f"seq must be an integer from 0 to 2**63-1, got {seq!r:.60}")
    # From here the seq is known: a message refused as a whole still fills its seq slot.
    unknown = sorted(set(doc) - _ENVELOPE_FIELDS)
    if unknown:
        return _reject(device_id, Reason.SCHEMA_INVALID, f"unknown field(s) {', '.join(unknown)[:100]}", seq)
    payload_device = doc.get("device_id")
    if not isinstance(payload_device, str):
        return _reject(device_id, Reason.SCHEMA_INVALID, "device_id must be a string", seq)
    try:
        msgspec.convert(doc.get("sent_at"), AwareDatetime)
    except msgspec.ValidationError as exc:
        return _reject(device_id, Reason.SCHEMA_INVALID, f"sent_at: {exc}", seq)
    items = doc.get("readings")
    if not isinstance(items, list) or not items:
        return _reject(device_id, Reason.SCHEMA_INVALID, "readings must be a non-empty list", seq)
    outcome = MessageOutcome(device_id=device_id, seq=seq, digest=hash(repr(items)))
    battery = doc.get("battery")
    if battery is not None:
        if isinstance(battery, int | float) and not isinstance(battery, bool) and 0.0 <= battery <= 1.0:
            outcome.battery = float(battery)
        else:
            outcome.rejections.append(
                Rejection(Reason.SCHEMA_INVALID, _printable(f"battery must be a number 0-1, got {battery!r:.40}"))
            )
    if len(items) > MAX_READINGS_PER_MESSAGE:
        return _reject(device_id, Reason.TOO_MANY_READINGS, f"{len(items)} > {MAX_READINGS_PER_MESSAGE}", seq)
    readings = [(index, _wire_reading(index, item)) for index, item in enumerate(items)]
    return _judge(device_id, payload_device, outcome, readings, received_at, registry)


def _wire_reading(index: int, item: Any) -> WireReading | Rejection:
    where = f"readings[{index}]"
    if not isinstance(item, dict):
        return Rejection(Reason.SCHEMA_INVALID, f"{where}: expected an object, got {type(item).__name__}")
    value = item.get("value")
    if isinstance(value, float) and not math.isfinite(value):
        return Rejection(Reason.NOT_FINITE, _printable(f"{where} ({item.get('metric')!r:.40}): value is not finite"))
    try:
        return msgspec.convert(item, WireReading)
    except msgspec.ValidationError as exc:
        return Rejection(Reason.SCHEMA_INVALID, _printable(f"{where}: {exc}"))


# --- the verdict on a decoded message ----------------------------------------------------------
def _judge(
    device_id: str,
    payload_device: str,
    outcome: MessageOutcome,
    readings: list[tuple[int, WireReading | Rejection]],
    received_at: datetime,
    registry: Registry,
) -> MessageOutcome:
    seq = outcome.seq
    if payload_device != device_id:
        return _reject(device_id, Reason.DEVICE_MISMATCH, "payload device_id differs from the topic's", seq)
    if len(readings) > MAX_READINGS_PER_MESSAGE:
        return _reject(device_id, Reason.TOO_MANY_READINGS, f"{len(readings)} > {MAX_READINGS_PER_MESSAGE}", seq)
    if not registry.device_known(device_id):
        return _reject(device_id, Reason.UNKNOWN_DEVICE, "device is not provisioned", seq)
    if registry.device_revoked(device_id):
        return _reject(device_id, Reason.DEVICE_REVOKED, "device was revoked", seq)
    bindings = registry.bindings(device_id)
    if not bindings:
        return _reject(device_id, Reason.UNBOUND_DEVICE, "device is bound to no patient", seq)

    consent: dict[str, bool] = {}
    seen: set[tuple[str, datetime]] = set()
    for index, wire in readings:
        if isinstance(wire, Rejection):
            outcome.rejections.append(wire)
            continue
        verdict = _judge_reading(index, wire, received_at, bindings)
        if isinstance(verdict, Rejection):
            outcome.rejections.append(verdict)
            continue
        patient_id, reading = verdict
        if patient_id not in consent:
            consent[patient_id] = registry.has_consent(patient_id, received_at)
        if not consent[patient_id]:
            outcome.rejections.append(
                _refused(index, reading.metric, Reason.NO_CONSENT, "patient has no active consent")
            )
            continue
        key = (reading.metric, reading.ts)
        if key in seen:
            outcome.rejections.append(
                _refused(index, reading.metric, Reason.DUPLICATE_READING, "same metric and time twice")
            )
            continue
        seen.add(key)
        bucket = outcome.accepted.setdefault(patient_id, PatientReadings(patient_id))
        enrolled = registry.enrolled_at(patient_id)
        if received_at - reading.ts > QUARANTINE_AGE or (enrolled is not None and reading.ts < enrolled):
            bucket.quarantined.append(reading)
        else:
            bucket.readings.append(reading)
    return outcome


def _refused(index: int, metric: str, reason: Reason, what: str) -> Rejection:
    """A reading's rejection, naming the reading (built only then: most readings pass)."""
    return Rejection(reason, _printable(f"{_printable(f'readings[{index}] ({metric})', 80)}: {what}"))


def _judge_reading(
    index: int, wire: WireReading, received_at: datetime, bindings: list[Binding]
) -> tuple[str, Reading] | Rejection:
    """One reading against the catalogue, the clock and the device's bindings."""
    spec = CATALOGUE.get(wire.metric)
    if spec is None:
        return _refused(index, wire.metric, Reason.UNKNOWN_METRIC, "unknown metric")
    if not math.isfinite(wire.value):
        return _refused(index, wire.metric, Reason.NOT_FINITE, "value is not finite")
    value = spec.normalise(wire.value, wire.unit)
    if value is None:
        return _refused(
            index, wire.metric, Reason.UNKNOWN_UNIT, f"unit {wire.unit[:40]!r} is not accepted for {spec.name}"
        )
    if not spec.plausible(value):
        return _refused(
            index, wire.metric, Reason.IMPLAUSIBLE, f"{value:g} {spec.unit} outside {spec.low:g}-{spec.high:g}"
        )
    dose_id = wire.dose_id
    if spec.is_event and not dose_id:
        return _refused(index, wire.metric, Reason.MISSING_DOSE_ID, "dose event without dose_id")
    if dose_id is not None and (len(dose_id) > MAX_DOSE_ID_CHARS or _printable(dose_id, 10_000) != dose_id):
        return _refused(
            index, wire.metric, Reason.SCHEMA_INVALID, f"dose_id must be up to {MAX_DOSE_ID_CHARS} characters of text"
        )
    ts = wire.ts.astimezone(UTC)
    if ts - received_at > FUTURE_TOLERANCE:
        return _refused(index, wire.metric, Reason.FUTURE_TIMESTAMP, f"timestamp {_stamp(ts)} more than 5 min ahead")
    if received_at - ts > MAX_READING_AGE:
        return _refused(
            index,
            wire.metric,
            Reason.TOO_OLD,
            f"taken {_stamp(ts)}, more than {MAX_READING_AGE.days} days before it arrived",
        )
    for binding in bindings:
        if binding.covers(ts):
            return binding.patient_id, Reading(spec.name, value, ts, dose_id)
    spans = ", ".join(f"{_stamp(b.valid_from)} to {_stamp(b.valid_to)}" for b in bindings[-3:])
    return _refused(
        index, wire.metric, Reason.OUTSIDE_BINDING, f"taken {_stamp(ts)}, outside the device's binding ({spans})"
    )
