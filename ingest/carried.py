"""The readings of one bridge batch, carried to Kafka in as few records as the contract allows
(ADRs 0032 and 0034).

A bridge batch holds up to a few hundred MQTT messages received together, and a wearable
often sends one reading per message. The stream worker's cost is per Kafka record (about
200 µs of CPU each, docs/benchmarks/end_to_end.md), not per reading, so the readings of one
patient from one device in one batch travel in one `ReadingBatch`, in the order they were
received, with each reading's message seq in `seqs`. Quarantined readings travel apart (the
worker stores them elsewhere). A `ReadingBatch` holds at most MAX_READINGS readings; one of a
single message is exactly what the bridge sent before (no `seqs`).

Many devices that each send rarely leave one message per device in a batch, so per-device
records alone would still cost the worker one record per message. The batches of patients
whose readings go to the same partition therefore travel together, as a JSON array of
`ReadingBatch`, keyed by the first one's patient id (which picks that partition), up to
MAX_READINGS readings per record. A patient's readings keep their partition, and so their
order and the worker that holds their detector state. The partition is Kafka's default
partitioner's, for the topic's real partition count; when the bridge does not know it yet
(`partition_of` None), each batch travels alone under its own key.

Pure: no I/O; the bridge adds each message's readings once the message is judged, then takes
the records when the batch is complete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from core.wire import READINGS, Reading, ReadingBatch, encode

MAX_READINGS: Final = 500  # per record: a batch of a chatty device stays well under Kafka's 1 MB

Record = tuple[str, bytes, bytes]  # Kafka topic, key, value (ingest.producer.Record)


@dataclass(slots=True)
class _Carried:
    first_seq: int
    readings: list[Reading] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    messages: int = 0


class CarriedReadings:
    def __init__(self, max_readings: int = MAX_READINGS) -> None:
        self._max = max_readings
        self._by_key: dict[tuple[str, str, bool], list[_Carried]] = {}

    def add(self, patient_id: str, device_id: str, quarantined: bool, seq: int, readings: list[Reading]) -> None:
        """The readings of one message (never split across records unless over the cap)."""
        runs = self._by_key.setdefault((patient_id, device_id, quarantined), [])
        if not runs or len(runs[-1].readings) + len(readings) > self._max:
            runs.append(_Carried(seq))
        run = runs[-1]
        run.readings += readings
        run.seqs += [seq] * len(readings)
        run.messages += 1

    def batches(self, received_at: datetime) -> list[ReadingBatch]:
        """The reading batches, in the order their first message was added, per key."""
        out = []
        for (patient_id, device_id, quarantined), runs in self._by_key.items():
            for run in runs:
                out.append(
                    ReadingBatch(
                        patient_id=patient_id,
                        device_id=device_id,
                        seq=run.first_seq,
                        received_at=received_at,
                        readings=run.readings,
                        quarantined=quarantined,
                        seqs=run.seqs if run.messages > 1 else None,
                    )
                )
        return out

    def records(self, received_at: datetime, partition_of: Callable[[bytes], int] | None = None) -> list[Record]:
        """The Kafka records (topic, key = patient id, value) of the batch's readings: the
        batches of one partition together (`partition_of(key)`), or each alone without it."""
        batches = self.batches(received_at)
        if partition_of is None:
            return [(READINGS.name, b.patient_id.encode(), encode(b)) for b in batches]
        by_partition: dict[int, list[ReadingBatch]] = {}
        for b in batches:
            by_partition.setdefault(partition_of(b.patient_id.encode()), []).append(b)
        out: list[Record] = []
        for together in by_partition.values():
            chunk: list[ReadingBatch] = []
            count = 0
            for b in together:
                if chunk and count + len(b.readings) > self._max:
                    out.append(_record(chunk))
                    chunk, count = [], 0
                chunk.append(b)
                count += len(b.readings)
            out.append(_record(chunk))
        return out


def _record(batches: list[ReadingBatch]) -> Record:
    """One record: a lone batch as itself (what a single-patient record always was), several as an array."""
    value = encode(batches[0]) if len(batches) == 1 else encode(batches)
    return (READINGS.name, batches[0].patient_id.encode(), value)
