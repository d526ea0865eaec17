"""What the worker accepts as a record of `rpm.readings.v1`.

The bridge writes only validated batches, but anything can be written to a Kafka topic (a
bug, another producer, a hand-made record). One function decides for both lanes, so that
storage and detection agree on what is a record: JSON of `ReadingBatch` (UTF-8, types as
declared; reading times carry a zone by their type), a `received_at` with a zone (the lag
metrics and the timer compare it with aware times), and ids without NUL characters (the
database cannot store them, and the device-class lookup would fail on them). Anything else
is `UndecodableRecordError`, which the storage lane dead-letters as `undecodable_record`.
"""

from __future__ import annotations

import msgspec

from core.wire import ReadingBatch, batch_decoder


class UndecodableRecordError(ValueError):
    """A record that is not a reading batch; the message says why."""


def decode_record(raw: bytes | None) -> ReadingBatch:
    if raw is None:
        raise UndecodableRecordError("no value (a tombstone)")
    try:
        batch = batch_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UndecodableRecordError(str(exc)) from exc
    except (UnicodeError, ValueError, TypeError, RecursionError) as exc:
        # msgspec raises UnicodeDecodeError for invalid UTF-8 inside a string
        raise UndecodableRecordError(f"{type(exc).__name__}: {exc}") from exc
    if batch.received_at.tzinfo is None or batch.received_at.utcoffset() is None:
        raise UndecodableRecordError("received_at has no time zone")
    for name, value in (("patient_id", batch.patient_id), ("device_id", batch.device_id)):
        if "\x00" in value:
            raise UndecodableRecordError(f"{name} contains a NUL character")
    return batch
