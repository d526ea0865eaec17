"""What the worker accepts as a record of rpm.readings.v1 (streams/records.py): the readings
the bridge would have let through, nothing the detectors' arithmetic cannot hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from core.wire import Reading, encode
from streams.records import DecodedOnce, Source, UndecodableRecordError, decode_record
from tests.streams.support import batch

NOW = datetime.now(UTC).replace(microsecond=0)


def raw(readings: list[Reading], **kw: object) -> bytes:
    # received_at is NOW, not the clock at call time: the readings' times are relative to NOW,
    # and a full suite runs long after this module is imported
    kw.setdefault("received_at", NOW)
    return encode(batch("p1", readings, **kw))  # type: ignore[arg-type]


def test_a_valid_record_decodes() -> None:
    (decoded,) = decode_record(raw([Reading("heart_rate", 72, NOW), Reading("spo2", 97, NOW)]))
    assert [r.metric for r in decoded.readings] == ["heart_rate", "spo2"]


def test_a_record_of_several_patients_batches_decodes_in_order() -> None:
    one = batch("p1", [Reading("heart_rate", 72, NOW)], received_at=NOW)
    two = batch("p2", [Reading("spo2", 97, NOW), Reading("spo2", 96, NOW)], received_at=NOW)
    decoded = decode_record(encode([one, two]))
    assert [(b.patient_id, [r.value for r in b.readings]) for b in decoded] == [("p1", [72]), ("p2", [97, 96])]
    # A dead letter about one batch of it carries that batch alone; a lone batch, the record itself.
    assert decode_record(Source(encode([one, two]), decoded, decoded[1]).value()) == [two]
    assert Source(raw([Reading("spo2", 97, NOW)]), [one], one).value() == raw([Reading("spo2", 97, NOW)])


def test_one_bad_batch_refuses_the_record_and_says_which() -> None:
    good = batch("p1", [Reading("heart_rate", 72, NOW)], received_at=NOW)
    bad = batch("p2", [Reading("heart_rate", 1e308, NOW)], received_at=NOW)
    with pytest.raises(UndecodableRecordError, match="batch 1: reading 0: heart_rate value 1e"):
        decode_record(encode([good, bad]))
    with pytest.raises(UndecodableRecordError, match="empty array"):
        decode_record(b"[]")


@pytest.mark.parametrize(
    ("reading", "says"),
    [
        (Reading("heart_rate", 1e308, NOW), "heart_rate value 1e+308 is not plausible"),
        # JSON has no NaN: msgspec writes null, which is not a float
        (Reading("heart_rate", float("nan"), NOW), "Expected `float`, got `null`"),
        (Reading("spo2", 97, datetime(1, 1, 1, tzinfo=UTC)), "outside the bounds"),
        (Reading("spo2", 97, NOW - timedelta(days=366)), "outside the bounds"),
        (Reading("spo2", 97, NOW + timedelta(minutes=10)), "outside the bounds"),
        (Reading("blood_sugar", 5, NOW), "'blood_sugar' is not in the catalogue"),
        (Reading("consciousness", 7, NOW), "not plausible"),
    ],
)
def test_a_reading_the_bridge_would_refuse_makes_the_record_undecodable(reading: Reading, says: str) -> None:
    with pytest.raises(UndecodableRecordError) as info:
        decode_record(raw([Reading("heart_rate", 72, NOW), reading]))
    assert says in str(info.value)


@pytest.mark.parametrize(
    "received_at",
    [datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC), datetime(1999, 12, 31, tzinfo=UTC)],
)
def test_a_received_at_out_of_range_is_refused(received_at: datetime) -> None:
    ts = received_at
    with pytest.raises(UndecodableRecordError, match="received_at"):
        decode_record(raw([Reading("spo2", 97, ts)], received_at=received_at))


def test_json_of_another_shape_is_undecodable() -> None:
    with pytest.raises(UndecodableRecordError):
        decode_record(msgspec.json.encode({"patient_id": "p1"}))


def test_both_lanes_decode_a_record_once_until_it_is_acknowledged() -> None:
    once = DecodedOnce()
    value = raw([Reading("spo2", 97, NOW)])
    first = once.decode(value)
    assert once.decode(value) is first  # the other lane gets the same batches, not a second decode
    bad = b"not json"
    for _ in range(2):  # an undecodable record says why to each lane
        with pytest.raises(UndecodableRecordError, match="JSON"):
            once.decode(bad)
    assert len(once) == 2
    once.forget(value)
    once.forget(bad)
    assert len(once) == 0
    again = once.decode(value)  # decoded anew after forgetting
    assert again == first
    assert again is not first


@pytest.mark.parametrize(("seq", "seqs"), [(2**63, None), (-(2**63) - 1, None), (1, [1, 2**64]), (1, [-(2**70), 1])])
def test_a_seq_outside_a_bigint_is_undecodable_not_a_database_error(seq: int, seqs: list[int] | None) -> None:
    def with_seqs(seq: int, seqs: list[int] | None) -> bytes:
        record = json.loads(raw([Reading("heart_rate", 72, NOW), Reading("spo2", 97, NOW)]))
        record["seq"], record["seqs"] = seq, seqs
        return json.dumps(record).encode()

    with pytest.raises(UndecodableRecordError, match="seq does not fit in a bigint"):
        decode_record(with_seqs(seq, seqs))
    (fits,) = decode_record(with_seqs(2**63 - 1, [-(2**63), 2**63 - 1]))
    assert (fits.seq, fits.seqs) == (2**63 - 1, [-(2**63), 2**63 - 1])
