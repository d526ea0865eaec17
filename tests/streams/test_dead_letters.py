"""The worker's barrier per record, without a broker: a batch that raises is split down to the
record that raises, which alone becomes an `internal_error` dead letter; its neighbours are
processed, in order. The care-plan agent's barrier does the same for one event."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.careplan import default_care_plan, encode_care_plan
from core.wire import CARE_PLANS, READINGS, RejectedMessage, default_partition, rejected_decoder
from streams.careplans.agents import apply_one
from streams.careplans.service import PlanBook
from streams.dead_letters import DeadLetters, each_or_dead_letter


def _letters() -> tuple[DeadLetters, list[RejectedMessage]]:
    sent: list[RejectedMessage] = []

    async def send(value: bytes) -> None:
        sent.append(rejected_decoder.decode(value))

    return DeadLetters(send), sent


def test_a_record_that_raises_is_dead_lettered_and_its_neighbours_processed_in_order() -> None:
    dead_letters, sent = _letters()
    done: list[bytes] = []
    calls: list[int] = []

    async def run(records: Sequence[bytes]) -> None:
        calls.append(len(records))
        if b"poison\xff" in records:
            raise KeyError("nobody foresaw this")
        done.extend(records)

    records = [f"r{i}".encode() for i in range(16)]
    records.insert(11, b"poison\xff")
    asyncio.run(each_or_dead_letter("storage", records, run, lambda r: r, dead_letters, attempts=2))

    assert done == [r for r in records if r != b"poison\xff"]
    assert len(sent) == 1
    letter = sent[0]
    assert letter.reason == "internal_error"
    assert letter.detail.startswith("storage: KeyError: ")
    assert letter.payload == "poison\ufffd"
    assert letter.topic == READINGS.name
    # Bisection: a few runs per poison record (17 records: 1 + 2*5 levels + a retry), not one per record.
    assert len(calls) <= 14


def test_a_batch_that_succeeds_runs_once() -> None:
    dead_letters, sent = _letters()
    calls: list[Sequence[int]] = []

    async def run(records: Sequence[int]) -> None:
        calls.append(records)

    asyncio.run(each_or_dead_letter("detection", list(range(100)), run, lambda r: b"", dead_letters))
    assert calls == [list(range(100))]
    assert sent == []


def test_a_long_detail_is_capped_and_lone_surrogates_do_not_break_the_dead_letter() -> None:
    dead_letters, sent = _letters()

    async def run(records: Sequence[str]) -> None:
        raise ValueError("\ud800" + "x" * 5000)

    asyncio.run(each_or_dead_letter("care plan", ["payload \udfff"], run, lambda r: r, dead_letters, attempts=1))
    assert len(sent) == 1
    assert len(sent[0].detail) <= 500
    assert sent[0].payload == "payload ?"


@dataclass
class _Message:
    partition: int


@dataclass
class _Event:
    key: bytes | None
    value: bytes | None
    message: _Message


def test_a_care_plan_record_that_raises_is_an_internal_error_and_the_next_one_applies() -> None:
    dead_letters, sent = _letters()
    data: dict[bytes, bytes] = {}
    calls: list[bytes] = []

    async def send_changelog(key: bytes, value: bytes | None, partition: int) -> Any:
        calls.append(key)
        if key == b"p-broken":
            raise RuntimeError("changelog bug")

    def event(patient: str) -> _Event:
        key = patient.encode()
        return _Event(key, encode_care_plan(default_care_plan(patient)), _Message(default_partition(key, 8)))

    book = PlanBook(data)
    outcomes = [
        asyncio.run(apply_one(event(p), data, send_changelog, book, dead_letters)) for p in ("p-broken", "p-fine")
    ]
    assert outcomes == ["failed", "applied"]
    assert set(data) == {b"p-fine"}
    assert [(d.reason, d.topic) for d in sent] == [("internal_error", CARE_PLANS.name)]
    assert "RuntimeError: changelog bug" in sent[0].detail
