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

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec

from core.catalogue import metric
from core.wire import (
    FUTURE_TOLERANCE,
    MAX_READING_AGE,
    MAX_SEQ,
    Reading,
    ReadingBatch,
    encode,
    readings_record_decoder,
)

EARLIEST_RECEIVED: Final = datetime(2000, 1, 1, tzinfo=UTC)
RECEIVED_AHEAD_TOLERANCE: Final = timedelta(days=1)
BIGINT: Final = range(-MAX_SEQ - 1, MAX_SEQ + 1)  # what the seq column holds


class UndecodableRecordError(ValueError):
    """A record that is not a reading batch; the message says why."""


Decode = Callable[[bytes | None], list[ReadingBatch]]


class DecodedOnce:
    """Both lanes get the very same value object of each record: the first to decode it keeps
    the result (or the error) here, the other takes it, and the fan-out's acknowledgement of
    the record forgets it. Keyed by the object's identity, which is unique while the record is
    held (the entry holds the object too); bounded in case records are dropped unacknowledged
    (a rebalance)."""

    LIMIT: Final = 200_000

    def __init__(self) -> None:
        self._held: dict[int, tuple[bytes, list[ReadingBatch] | UndecodableRecordError]] = {}

    def decode(self, raw: bytes | None) -> list[ReadingBatch]:
        if raw is None:
            return decode_record(raw)
        held = self._held.get(id(raw))
        if held is None or held[0] is not raw:
            try:
                result: list[ReadingBatch] | UndecodableRecordError = decode_record(raw)
            except UndecodableRecordError as exc:
                result = exc
            if len(self._held) >= self.LIMIT:
                self._held.clear()
            held = self._held[id(raw)] = (raw, result)
        if isinstance(held[1], UndecodableRecordError):
            raise UndecodableRecordError(*held[1].args)
        return held[1]

    def forget(self, raw: bytes | None) -> None:
        if raw is not None:
            self._held.pop(id(raw), None)

    def __len__(self) -> int:
        return len(self._held)


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
    batches = [decoded] if isinstance(decoded, ReadingBatch) else decoded
    if not batches:
        raise UndecodableRecordError("an empty array of batches")
    check = _Checks(datetime.now(UTC))
    for n, batch in enumerate(batches):
        fault = check.batch(batch)
        if fault is not None:
            raise UndecodableRecordError(fault if len(batches) == 1 else f"batch {n}: {fault}")
    return batches


class Source:
    """What a dead letter about one batch of a record carries: the record itself when it holds
    that batch alone, else the batch on its own (so a dead letter never holds other patients').
    Worked out only when a dead letter is sent: re-encoding every batch of every array record
    on the way in cost more than storing it."""

    __slots__ = ("_batch", "_raw")

    def __init__(self, raw: bytes, batches: list[ReadingBatch], batch: ReadingBatch) -> None:
        self._raw: bytes | None = raw if len(batches) == 1 else None
        self._batch = batch

    def value(self) -> bytes:
        return self._raw if self._raw is not None else encode(self._batch)


class _Checks:
    """The checks of one record's batches. The batches of one bridge batch share `received_at`,
    so its checks and the reading-time bounds around it are worked out once per value."""

    def __init__(self, now: datetime) -> None:
        self._now = now
        self._received: datetime | None = None
        self._bounds: tuple[datetime, datetime] | str = ""

    def _bounds_of(self, received: datetime) -> tuple[datetime, datetime] | str:
        if received is self._received or received == self._received:
            return self._bounds
        bounds: tuple[datetime, datetime] | str
        if received.tzinfo is None or received.utcoffset() is None:
            bounds = "received_at has no time zone"
        elif received < EARLIEST_RECEIVED or received - self._now > RECEIVED_AHEAD_TOLERANCE:
            bounds = f"received_at {received.isoformat()} is before 2000 or more than a day ahead"
        else:
            bounds = (received - MAX_READING_AGE, received + FUTURE_TOLERANCE)
        self._received, self._bounds = received, bounds
        return bounds

    def batch(self, batch: ReadingBatch) -> str | None:
        bounds = self._bounds_of(batch.received_at)
        if isinstance(bounds, str):
            return bounds
        if "\x00" in batch.patient_id:
            return "patient_id contains a NUL character"
        if "\x00" in batch.device_id:
            return "device_id contains a NUL character"
        if batch.seqs is not None and len(batch.seqs) != len(batch.readings):
            return f"{len(batch.seqs)} seqs for {len(batch.readings)} readings"
        if batch.seq not in BIGINT or (batch.seqs and (min(batch.seqs) not in BIGINT or max(batch.seqs) not in BIGINT)):
            return "a seq does not fit in a bigint"
        earliest, latest = bounds
        for index, reading in enumerate(batch.readings):
            fault = _reading_fault(reading, earliest, latest)
            if fault is not None:
                return f"reading {index}: {fault}"
        return None


def _reading_fault(reading: Reading, earliest: datetime, latest: datetime) -> str | None:
    spec = metric(reading.metric)
    if spec is None:
        return f"metric {reading.metric[:64]!r} is not in the catalogue"
    if not spec.plausible(reading.value):
        return f"{spec.name} value {reading.value!r} is not plausible"
    if not earliest <= reading.ts <= latest:
        return f"time {reading.ts.isoformat()} is outside the bounds around received_at"
    if spec.is_event and not reading.dose_id:
        return f"{spec.name} event without dose_id"
    if reading.dose_id is not None and "\x00" in reading.dose_id:
        return "dose_id contains a NUL character"
    return None
