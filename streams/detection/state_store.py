"""Detector state in a Faust table, saved once per batch per patient.

Each value is an envelope `[partition, state]`: the `DetectorState` JSON of `dump_state`
and the partition of `rpm.readings.v1` the patient's readings arrive on. The partition goes
with the value because two things need it for keys this worker has not seen a reading of since
it started (a patient whose device fell silent, recovered from the changelog):
- the changelog record of a key must go to that same partition, so that the worker that owns
  the patient's readings also recovers the patient's state;
- the timer may only judge patients of partitions this worker owns right now (the memory store
  also holds keys of standby and formerly owned partitions).

Faust's `table[key] = value` takes the changelog partition from the "current event", which is
meaningless for a batch mixing partitions; the store therefore writes the table's data and its
changelog record itself, with the partition named. Decoding a state costs more than the
detectors on a small batch, so the decoded state is cached for as long as the table holds the
very same bytes object.

After the states of a batch are acknowledged, `seal` writes one small marker record per
partition touched (key `MARK_KEY`, the last source offset judged), alone in its produce
request. On a standard Kafka broker it is merely a progress note; the embedded Tansu broker
answers ListOffsets(latest) with the base offset of the partition's last record batch plus
one instead of its log end offset, and Faust stops recovering a table at that offset, so a
multi-record last batch would leave the newest states unrecovered after a failover. With a
single-record batch last, the reported offset is right on both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Final

import msgspec

from core.detectors.service import DetectorState, dump_state, load_state


class StoredState(msgspec.Struct, array_like=True):
    partition: int
    state: msgspec.Raw


MARK_KEY: Final = b"\x00mark"  # not a patient id: patient ids are printable


class Mark(msgspec.Struct):
    partition: int
    offset: int | None


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(StoredState)

# (key, value, partition) -> handed to the producer; the awaitable returned resolves on Kafka's ack
ChangelogSend = Callable[[bytes, bytes, int], Awaitable[Awaitable[object]]]


def encode_stored(partition: int, state: DetectorState) -> bytes:
    return _encoder.encode(StoredState(partition, msgspec.Raw(dump_state(state))))


def decode_stored(value: bytes) -> tuple[int, DetectorState]:
    stored = _decoder.decode(value)
    return stored.partition, load_state(bytes(stored.state))


def stored_partition(value: bytes) -> int:
    """The partition of an encoded envelope, without decoding the state (`[3,{...}]`)."""
    return int(value[1 : value.index(b",", 1)])


class StateStore:
    """Read and save patients' detector state in a Faust table (bytes keys and values)."""

    def __init__(self, data: MutableMapping[bytes, bytes], send_changelog: ChangelogSend) -> None:
        self._data = data
        self._send = send_changelog
        self._cache: dict[bytes, tuple[bytes, int, DetectorState]] = {}

    def get(self, patient_id: str) -> DetectorState:
        found = self._lookup(patient_id.encode())
        return found[1] if found is not None else DetectorState()

    def _lookup(self, key: bytes) -> tuple[int, DetectorState] | None:
        raw = self._data.get(key)
        if raw is None:
            return None
        cached = self._cache.get(key)
        if cached is not None and cached[0] is raw:
            return cached[1], cached[2]
        partition, state = decode_stored(raw)
        self._cache[key] = (raw, partition, state)
        return partition, state

    async def save(self, patient_id: str, partition: int, state: DetectorState) -> Awaitable[object]:
        """Keep the new state and send its changelog record; returns the record's ack."""
        key = patient_id.encode()
        value = encode_stored(partition, state)
        self._data[key] = value
        self._cache[key] = (value, partition, state)
        return await self._send(key, value, partition)

    async def seal(self, partition: int, offset: int | None) -> Awaitable[object]:
        """Send a partition's marker (the last source offset judged, if known); returns its ack.
        Call it once the partition's state records are acknowledged, so that it is alone."""
        return await self._send(MARK_KEY, _encoder.encode(Mark(partition, offset)), partition)

    def owned(self, partitions: frozenset[int]) -> Iterator[tuple[str, int, DetectorState]]:
        """(patient_id, partition, state) of every patient on one of the given partitions."""
        for key, raw in list(self._data.items()):
            if key == MARK_KEY or stored_partition(raw) not in partitions:
                continue
            found = self._lookup(key)
            if found is not None:
                yield key.decode(), found[0], found[1]

    def __len__(self) -> int:
        return sum(1 for key in self._data if key != MARK_KEY)
