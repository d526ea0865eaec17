"""What the worker accepts as a record of `rpm.readings.v1`: one `ReadingBatch`, or a JSON array
of them (the batches of several patients of one partition, ADR 0034).

The bridge writes only validated batches, but anything can be written to a Kafka topic (a
bug, another producer, a hand-made record). One function decides for both lanes, so that
storage and detection agree on what is a record: JSON of `ReadingBatch` (UTF-8, types as
declared; reading times carry a zone by their type), a `received_at` with a zone (the lag
metrics and the timer compare it with aware times), and ids without NUL characters (the
database cannot store them, and the device-class lookup would fail on them). Each reading
must be what the bridge would have let through: a catalogue metric, a plausible value in its
canonical unit, a time inside the wire contract's bounds around `received_at`, which itself
lies between 2000 and a day ahead of the worker's clock (a year-1 or 1e308 reading would
otherwise reach the detectors' date and decimal arithmetic). Anything else is
`UndecodableRecordError`, which the storage lane dead-letters as `undecodable_record`; the
message names the first batch and reading at fault. The record is the producer's unit: one
batch at fault refuses the whole record (the bridge never writes one).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec

from core.catalogue import metric
from core.wire import FUTURE_TOLERANCE, MAX_READING_AGE, Reading, ReadingBatch, encode, readings_record_decoder

EARLIEST_RECEIVED: Final = datetime(2000, 1, 1, tzinfo=UTC)
RECEIVED_AHEAD_TOLERANCE: Final = timedelta(days=1)


class UndecodableRecordError(ValueError):
    """A record that is not a reading batch; the message says why."""


def decode_record(raw: bytes | None) -> list[ReadingBatch]:
    """The reading batches of one record: one, or several of one partition (an array, ADR 0034)."""
    if raw is None:
        raise UndecodableRecordError("no value (a tombstone)")
    try:
        decoded: ReadingBatch | list[ReadingBatch] = readings_record_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UndecodableRecordError(str(exc)) from exc
    except (UnicodeError, ValueError, TypeError, RecursionError) as exc:
        # msgspec raises UnicodeDecodeError for invalid UTF-8 inside a string
        raise UndecodableRecordError(f"{type(exc).__name__}: {exc}") from exc
    if isinstance(decoded, ReadingBatch):
        fault = _batch_fault(decoded)
        if fault is not None:
            raise UndecodableRecordError(fault)
        return [decoded]
    if not decoded:
        raise UndecodableRecordError("an empty array of batches")
    for n, batch in enumerate(decoded):
        fault = _batch_fault(batch)
        if fault is not None:
            raise UndecodableRecordError(f"batch {n}: {fault}")
    return decoded


def source_of(raw: bytes, batches: list[ReadingBatch], batch: ReadingBatch) -> bytes:
    """What a dead letter about one batch of a record carries: the record itself when it holds
    that batch alone, else the batch on its own (so a dead letter never holds other patients')."""
    return raw if len(batches) == 1 else encode(batch)


def _batch_fault(batch: ReadingBatch) -> str | None:
    if batch.received_at.tzinfo is None or batch.received_at.utcoffset() is None:
        return "received_at has no time zone"
    for name, value in (("patient_id", batch.patient_id), ("device_id", batch.device_id)):
        if "\x00" in value:
            return f"{name} contains a NUL character"
    received = batch.received_at
    if received < EARLIEST_RECEIVED or received - datetime.now(UTC) > RECEIVED_AHEAD_TOLERANCE:
        return f"received_at {received.isoformat()} is before 2000 or more than a day ahead"
    if batch.seqs is not None and len(batch.seqs) != len(batch.readings):
        return f"{len(batch.seqs)} seqs for {len(batch.readings)} readings"
    for index, reading in enumerate(batch.readings):
        fault = _reading_fault(reading, received)
        if fault is not None:
            return f"reading {index}: {fault}"
    return None


def _reading_fault(reading: Reading, received: datetime) -> str | None:
    spec = metric(reading.metric)
    if spec is None:
        return f"metric {reading.metric[:64]!r} is not in the catalogue"
    if not spec.plausible(reading.value):
        return f"{spec.name} value {reading.value!r} is not plausible"
    if reading.ts - received > FUTURE_TOLERANCE or received - reading.ts > MAX_READING_AGE:
        return f"time {reading.ts.isoformat()} is outside the bounds around received_at"
    if spec.is_event and not reading.dose_id:
        return f"{spec.name} event without dose_id"
    if reading.dose_id is not None and "\x00" in reading.dose_id:
        return "dose_id contains a NUL character"
    return None
