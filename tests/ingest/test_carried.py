"""ingest.carried: the readings of one bridge batch in as few Kafka records as the contract
allows, each reading keeping its message seq."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.wire import READINGS, Reading, batch_decoder, encode
from ingest.carried import CarriedReadings
from streams.records import UndecodableRecordError, decode_record
from streams.storage.service import decode_records

NOW = datetime.now(UTC).replace(microsecond=0)


def hr(minute: int, value: float = 70) -> Reading:
    return Reading("heart_rate", value, NOW - timedelta(minutes=60 - minute))


def test_messages_of_one_device_become_one_record_with_each_readings_seq() -> None:
    carried = CarriedReadings()
    carried.add("p1", "d1", False, 7, [hr(1)])
    carried.add("p1", "d1", False, 8, [hr(2), hr(3)])
    carried.add("p2", "d2", False, 3, [hr(4)])
    carried.add("p1", "d1", True, 9, [hr(5)])  # quarantined travels apart
    carried.add("p1", "d1", False, 10, [hr(6)])
    records = carried.records(NOW)
    assert [(topic, key) for topic, key, _ in records] == [
        (READINGS.name, b"p1"),
        (READINGS.name, b"p2"),
        (READINGS.name, b"p1"),
    ]
    first, second, third = (batch_decoder.decode(value) for _, _, value in records)
    assert (first.seq, first.seqs, first.quarantined) == (7, [7, 8, 8, 10], False)
    assert [r.ts for r in first.readings] == [hr(1).ts, hr(2).ts, hr(3).ts, hr(6).ts]
    assert [first.seq_of(i) for i in range(4)] == [7, 8, 8, 10]
    # One message: the record is what the bridge sent before (no seqs).
    assert (second.seq, second.seqs) == (3, None)
    assert (third.seq, third.seqs, third.quarantined) == (9, None, True)
    # The worker accepts them, and stores each reading with its own message seq.
    for _, _, value in records:
        decode_record(value)
    rows = decode_records([value for _, _, value in records]).observations
    assert [(row[0], row[6]) for row in rows] == [("p1", 7), ("p1", 8), ("p1", 8), ("p1", 10), ("p2", 3)]


def test_a_record_holds_at_most_the_cap_and_never_splits_a_message() -> None:
    carried = CarriedReadings(max_readings=4)
    for seq in range(1, 6):
        carried.add("p1", "d1", False, seq, [hr(seq * 2), hr(seq * 2 + 1)])
    batches = carried.batches(NOW)
    assert [len(b.readings) for b in batches] == [4, 4, 2]
    assert [b.seqs for b in batches] == [[1, 1, 2, 2], [3, 3, 4, 4], None]
    assert [b.seq for b in batches] == [1, 3, 5]


def test_the_worker_refuses_a_record_whose_seqs_do_not_match_its_readings() -> None:
    carried = CarriedReadings()
    carried.add("p1", "d1", False, 1, [hr(1)])
    carried.add("p1", "d1", False, 2, [hr(2)])
    (batch,) = carried.batches(NOW)
    batch.seqs = [1]
    with pytest.raises(UndecodableRecordError, match="1 seqs for 2 readings"):
        decode_record(encode(batch))


def test_patients_of_one_partition_travel_together_up_to_the_cap() -> None:
    partitions = {b"p1": 0, b"p2": 1, b"p3": 0, b"p4": 0}
    carried = CarriedReadings(max_readings=4)
    carried.add("p1", "d1", False, 1, [hr(1)])
    carried.add("p2", "d2", False, 1, [hr(2)])
    carried.add("p3", "d3", False, 5, [hr(3), hr(4)])
    carried.add("p1", "d1", False, 2, [hr(5)])
    carried.add("p4", "d4", False, 9, [hr(6)])  # would make 5 readings on partition 0: a new record
    records = carried.records(NOW, partitions.__getitem__)
    # Keyed by the first patient: Kafka's partitioner sends the record to that patient's partition.
    assert [key for _, key, _ in records] == [b"p1", b"p4", b"p2"]
    first, second, third = (decode_record(value) for _, _, value in records)
    assert [(b.patient_id, b.seqs or b.seq) for b in first] == [("p1", [1, 2]), ("p3", 5)]
    assert [(b.patient_id, b.seq) for b in second] == [("p4", 9)]
    assert [(b.patient_id, b.seq) for b in third] == [("p2", 1)]
    # A lone batch is written as itself, as a record of one patient always was.
    assert batch_decoder.decode(records[2][2]).patient_id == "p2"
    # Every reading stored once, with its own message seq.
    rows = decode_records([value for _, _, value in records]).observations
    assert sorted((row[0], row[6]) for row in rows) == [
        ("p1", 1),
        ("p1", 2),
        ("p2", 1),
        ("p3", 5),
        ("p3", 5),
        ("p4", 9),
    ]


def test_without_the_partition_count_each_batch_travels_under_its_own_key() -> None:
    carried = CarriedReadings()
    carried.add("p1", "d1", False, 1, [hr(1)])
    carried.add("p2", "d2", False, 1, [hr(2)])
    assert [key for _, key, _ in carried.records(NOW)] == [b"p1", b"p2"]
