"""The readings of one bridge batch, carried to Kafka in as few records as the contract allows
(ADR 0032).

A bridge batch holds up to a few hundred MQTT messages received together, and a wearable
often sends one reading per message. The stream worker's cost is per Kafka record (about
200 µs of CPU each, docs/benchmarks/end_to_end.md), not per reading, so the readings of one
patient from one device in one batch travel in one `ReadingBatch`, in the order they were
received, with each reading's message seq in `seqs`. Quarantined readings travel apart (the
worker stores them elsewhere). A record carries at most MAX_READINGS readings; a record of one
message is exactly what the bridge sent before (no `seqs`).

Pure: no I/O; the bridge adds each message's readings once the message is judged, then takes
the records when the batch is complete.
"""

from __future__ import annotations

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

    def records(self, received_at: datetime) -> list[Record]:
        """The Kafka records (topic, key = patient id, value) of the batch's readings."""
        return [(READINGS.name, b.patient_id.encode(), encode(b)) for b in self.batches(received_at)]
