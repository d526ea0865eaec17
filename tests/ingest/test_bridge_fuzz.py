"""Fuzzing the real running bridge over MQTT: garbage and mutated messages interleaved with
valid ones. Every valid reading is stored exactly once, every invalid message or reading
becomes exactly one dead letter with a reason, no resend is asked for a message that was
refused as a whole, and the bridge never stalls (same process, ready, still forwarding)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from core.wire import commands_topic, telemetry_topic
from infra.stack import Stack, metric_value
from ingest.validation import Reason
from tests.helpers import Device, count_rows, create_patient, provision, wait_for
from tests.ingest.test_bridge import dead_letters

BAD_BYTES = [b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\x80abc", b"\xf8\x88\x80\x80\x80"]


@dataclass
class Ledger:
    """What the fuzzer sent and what the platform owes for it."""

    base: datetime
    seq: int = 0
    tick: int = 0
    good: list[tuple[str, datetime]] = field(default_factory=list)
    bad: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    def next_ts(self) -> datetime:
        self.tick += 1
        return self.base - timedelta(seconds=self.tick)

    def good_reading(self) -> str:
        ts = self.next_ts()
        self.good.append(("heart_rate", ts))
        return json.dumps({"metric": "heart_rate", "value": 60 + self.tick % 40, "unit": "/min", "ts": ts.isoformat()})


def _ts(ts: datetime) -> str:
    return json.dumps(ts.isoformat())


# One bad reading: a template whose placeholder {ts} is a fresh timestamp; @B@ marks where
# invalid UTF-8 bytes go.
BAD_READINGS = [
    '{"metric": "heart_rate", "value": 72, "unit": "/min@B@", "ts": {ts}}',
    '{"metric": "heart@B@_rate", "value": 72, "unit": "/min", "ts": {ts}}',
    '{"metric": "heart_rate", "value": 72, "unit": "/min", "ts": "2026-11-28T@B@10:00:00Z"}',
    '{"metric": "heart_rate", "value": 72, "unit": "\\ud800", "ts": {ts}}',
    '{"metric": "medication_taken", "value": 1, "unit": "1", "dose_id": "\\udfff", "ts": {ts}}',
    '{"metric": "heart_rate", "value": NaN, "unit": "/min", "ts": {ts}}',
    '{"metric": "heart_rate", "value": -Infinity, "unit": "/min", "ts": {ts}}',
    '{"metric": "heart_rate", "value": 1e400, "unit": "/min", "ts": {ts}}',
    '{"metric": "heart_rate", "value": ' + "9" * 6000 + ', "unit": "/min", "ts": {ts}}',
    '{"metric": "heart_rate", "value": "72", "unit": "/min", "ts": {ts}}',
    '{"metric": "heart_rate", "value": true, "unit": "/min", "ts": {ts}}',
    '{"metric": "heart_rate", "value": null, "unit": "/min", "ts": {ts}}',
    '{"metric": "heart_rate", "value": [[[[[72]]]]], "unit": "/min", "ts": {ts}}',
    '{"metric": "heart_rate", "value": 72, "value": "seventy", "unit": "/min", "ts": {ts}}',
    '{"metric": "heart_rate", "value": 72, "unit": "/min", "ts": "2026-11-28T10:00:00"}',
    '{"metric": "heart_rate", "value": 72, "unit": "/min", "ts": "2999-01-01T00:00:00Z"}',
    '{"metric": "heart_rate", "value": 72, "unit": "/min", "ts": "1970-01-01T00:00:00Z"}',
    '{"metric": 72, "value": 72, "unit": "/min", "ts": {ts}}',
    '["heart_rate", 72]',
]

# A message refused as a whole, its seq readable: {seq} and {device} are filled in.
BAD_ENVELOPES = [
    '{"schema": 1, "device_id": "{device}@B@", "seq": {seq}, "sent_at": {sent}, "readings": [{r}]}',
    '{"schema": 1, "device_id": "{device}", "seq": {seq}, "sent_at": {sent}, "readings": [{r}], "x": {"y": [1]}}',
    '{"schema": 1, "device_id": "{device}", "seq": {seq}, "sent_at": "yesterday", "readings": [{r}]}',
    '{"schema": 1, "device_id": "{device}", "seq": {seq}, "sent_at": {sent}, "readings": []}',
    '{"schema": 1, "device_id": "{device}", "seq": {seq}, "sent_at": {sent}, "readings": {"a": 1}}',
]

# Refused before the seq could be read.
SEQLESS = [
    b"",
    b"\x00\x01\x02",
    b"[" * 20_000,
    b'{"schema": 1, "device_id": "x", "seq": "one"}',
    b'{"schema": 1, "seq": ' + b"1" * 5000 + b"}",
    b"\xff\xfe{}",
    b"null",
    b'{"schema": 2}',
]


def _fill(template: str, ledger: Ledger, bad: bytes) -> str:
    return template.replace("{ts}", _ts(ledger.next_ts())).replace("@B@", bad.decode("latin-1"))


message_kind = st.sampled_from(["valid", "bad_reading", "bad_envelope", "seqless", "arbitrary"])


def test_bridge_survives_garbage_and_stores_every_valid_reading(platform: Stack, db: psycopg.Connection) -> None:
    patient = create_patient(db)
    creds = provision(platform, patient)
    device_id = creds.device_id
    device = Device(platform, creds.username, creds.password)
    commands: list[bytes] = []
    got_command = threading.Event()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        commands.append(msg.payload)
        got_command.set()

    device.client.on_message = on_message
    device.connect()
    device.client.subscribe(commands_topic(device_id), qos=1)
    bridge_pid = platform.pid("ingest")
    ledger = Ledger(base=datetime.now(UTC) - timedelta(minutes=1))
    topic = telemetry_topic(device_id)
    sent_at = _ts(datetime.now(UTC))

    def envelope(readings: list[str]) -> bytes:
        ledger.seq += 1
        body = (
            f'{{"schema": 1, "device_id": "{device_id}", "seq": {ledger.seq}, '
            f'"sent_at": {sent_at}, "readings": [{", ".join(readings)}], "battery": 0.9}}'
        )
        return body.encode()

    @settings(
        max_examples=150,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        kind=message_kind,
        which=st.integers(0, 1000),
        bad=st.sampled_from(BAD_BYTES),
        neighbours=st.integers(0, 3),
        arbitrary=st.binary(min_size=1, max_size=200),
    )
    def publish_one(kind: str, which: int, bad: bytes, neighbours: int, arbitrary: bytes) -> None:
        ledger.kinds[kind] += 1
        if kind == "valid":
            body = envelope([ledger.good_reading() for _ in range(neighbours + 1)])
        elif kind == "bad_reading":
            template = BAD_READINGS[which % len(BAD_READINGS)]
            readings = [ledger.good_reading() for _ in range(neighbours)]
            readings.insert(which % (neighbours + 1), "@BAD_READING@")
            body = envelope(readings).replace(b"@BAD_READING@", _fill(template, ledger, bad).encode("latin-1"))
            ledger.bad += 1
        elif kind == "bad_envelope":
            ledger.seq += 1
            text = BAD_ENVELOPES[which % len(BAD_ENVELOPES)]
            text = text.replace("{device}", device_id).replace("{seq}", str(ledger.seq)).replace("{sent}", sent_at)
            # Readings inside a refused envelope are not stored: they are not owed.
            ts = ledger.next_ts()
            text = text.replace("{r}", json.dumps({"metric": "spo2", "value": 97, "unit": "%", "ts": ts.isoformat()}))
            body = text.replace("@B@", bad.decode("latin-1")).encode("latin-1")
            ledger.bad += 1
        elif kind == "seqless":
            ledger.seq += 1  # the device spent a seq on it, which the bridge cannot read
            body = SEQLESS[which % len(SEQLESS)]
            ledger.bad += 1
        else:
            ledger.seq += 1
            body = b"\x00" + arbitrary  # never a JSON object: one dead letter, no seq
            ledger.bad += 1
        assert device.publish(topic, body).value < 0x80

    publish_one()
    assert min(ledger.kinds.values()) >= 10, ledger.kinds  # every kind of message was exercised
    # A last valid message after all the garbage: it must be stored too.
    final = envelope([ledger.good_reading()])
    assert device.publish(topic, final).value < 0x80

    assert wait_for(lambda: count_rows(db, patient) >= len(ledger.good), timeout=120), "readings missing"
    rows = db.execute(
        "SELECT metric, ts, count(*) FROM observations WHERE patient_id = %s GROUP BY metric, ts", (patient,)
    ).fetchall()
    assert {(m, t) for m, t, _ in rows} == set(ledger.good)
    assert all(n == 1 for _, _, n in rows)

    letters = dead_letters(platform, device_id, ledger.bad, timeout=120)
    assert len(letters) == ledger.bad
    known = {str(r) for r in Reason}
    assert all(letter.reason in known and letter.reason != Reason.INTERNAL_ERROR for letter in letters)
    assert all(letter.detail for letter in letters)

    # Refused messages fill their seq slots: the bridge asked for no resend.
    assert not got_command.wait(timeout=2), f"unexpected commands: {commands[:3]}"
    # Never stalled, never restarted.
    assert platform.pid("ingest") == bridge_pid
    assert metric_value(platform.ports.ingest_metrics, "rpm_ingest_ready") == 1.0
    device.close()
