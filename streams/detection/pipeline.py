"""Batches of reading records through the detectors, and what comes out to Kafka.

For one batch taken from `rpm.readings.v1` (any mix of partitions and patients):
1. decode the records and group them by patient (quarantined batches never reach detection;
   undecodable records are left to the storage lane, which dead-letters them);
2. per patient: care plan and saved state from the tables, `detect_readings` once over all of
   the patient's readings, then `observe_devices` for the devices whose class is known;
3. publish every detection to `rpm.detections.v1` (key = patient id) and wait for the acks;
4. then save each patient's new state (table + changelog, acknowledged);
5. only then does the agent return, and Faust acknowledges the batch's offsets.

The order makes a crash safe: state is saved only after its detections are in Kafka, so a
replay after a crash either finds the state already saved (and the detectors skip readings
they have seen) or re-detects and republishes the same deterministic ids. The window for such
a duplicate is the few milliseconds between the detection acks and the state acks.

Failures: when the detectors refuse a patient's group (a non-finite value; a bug), its records
are run again one at a time, and only the records they still refuse are dead-lettered
(`detection_refused`, with the error); the patient's state follows the others. Kafka sends are
retried with backoff (stamina) a bounded number of times; a patient whose detections could not
be published keeps the previous state and its records are dead-lettered. Anything else a
batch raises is isolated to its record by the lane's barrier (`streams.dead_letters`).

The timer (`run_due`) judges missed measurements and doses and silent devices for the
patients of the partitions this worker owns, under the same lock as the batches, and commits
its detections and states the same way. It skips patients who withdrew collection (their
readings are refused at the bridge, so their silence is their choice, not a finding).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from core.detectors.model import Detection
from core.detectors.service import DetectorState, detect_due, detect_readings, observe_devices
from core.logging import get_logger
from core.retry import bounded
from core.rules import Rule
from core.supervision import error_detail
from core.wire import DetectionRecord, Reading, ReadingBatch, encode
from streams import metrics
from streams.careplans.service import PlanBook
from streams.dead_letters import DeadLetters
from streams.detection.state_store import StateStore
from streams.records import Decode, Source, UndecodableRecordError, decode_record

log = get_logger("streams.detection")

# (key, value) -> handed to the producer; the awaitable it returns resolves on Kafka's ack
Publish = Callable[[bytes, bytes], Awaitable[Awaitable[object]]]


class DeviceClassSource(Protocol):
    """Where device classes come from (`repository.DeviceClasses` in the worker)."""

    async def classes_of(self, device_ids: Iterable[str]) -> dict[str, str]: ...


class CollectionSource(Protocol):
    """Which of these patients withdrew collection (streams.detection.repository.CollectionConsents)."""

    async def withdrawn(self, patient_ids: Iterable[str]) -> frozenset[str]: ...


@dataclass(slots=True)
class PatientRecords:
    """The readings of one patient in one batch."""

    patient_id: str
    partition: int
    readings: list[Reading] = field(default_factory=list)
    by_device: dict[str, list[Reading]] = field(default_factory=dict)
    # what a dead letter about each batch carries (`Source`), in the order of `batches`
    sources: list[Source] = field(default_factory=list)
    batches: list[ReadingBatch] = field(default_factory=list)  # one per record, in order
    # reading time -> when the platform received the record holding it (latency of detections)
    received: dict[datetime, datetime] = field(default_factory=dict)


@dataclass(slots=True)
class Grouped:
    patients: dict[str, PatientRecords] = field(default_factory=dict)
    records: int = 0
    quarantined: int = 0
    undecodable: int = 0
    # partition -> (highest offset, received_at of that record)
    progress: dict[int, tuple[int, datetime]] = field(default_factory=dict)


def group_records(records: Iterable[tuple[int, int, bytes | None]], decode: Decode = decode_record) -> Grouped:
    """Decode (partition, offset, value) records and group their readings by patient."""
    out = Grouped()
    for partition, offset, raw in records:
        out.records += 1
        try:
            batches = decode(raw)
        except UndecodableRecordError:
            out.undecodable += 1
            continue
        assert raw is not None  # decode_record refuses a tombstone
        seen = out.progress.get(partition)
        if seen is None or offset > seen[0]:
            out.progress[partition] = (offset, batches[0].received_at)
        if all(batch.quarantined for batch in batches):
            out.quarantined += 1
        for batch in batches:
            if not batch.quarantined:
                _add_batch(out, partition, batch, Source(raw, batches, batch))
    return out


def _add_batch(out: Grouped, partition: int, batch: ReadingBatch, source: Source) -> None:
    group = out.patients.get(batch.patient_id)
    if group is None:
        group = out.patients[batch.patient_id] = PatientRecords(batch.patient_id, partition)
    elif group.partition != partition:
        # Keys pick partitions, so this only happens when a producer picked partitions
        # itself; the state follows the partition seen first.
        log.warning("patient's readings on two partitions", partitions=[group.partition, partition])
    group.readings.extend(batch.readings)
    group.by_device.setdefault(batch.device_id, []).extend(batch.readings)
    group.sources.append(source)
    group.batches.append(batch)
    for r in batch.readings:
        previous = group.received.get(r.ts)
        if previous is None or batch.received_at > previous:
            group.received[r.ts] = batch.received_at


def to_record(d: Detection, *, received_at: datetime | None, produced_at: datetime) -> DetectionRecord:
    return DetectionRecord(
        detection_id=d.detection_id,
        patient_id=d.patient_id,
        rule=d.rule,
        severity=d.severity,
        kind=d.kind.value,
        detected_at=d.detected_at,
        episode_start=d.episode_start,
        evidence=d.evidence,
        clears=d.clears,
        received_at=received_at,
        produced_at=produced_at,
    )


def silent_devices(state: DetectorState) -> dict[str, int]:
    """The patient's devices silent now, by level: urgent when the urgent episode is open, else warn."""
    counts = {"warn": 0, "urgent": 0}
    for seen in state.silence.devices.values():
        rules = {episode.rule for episode in seen.open}
        if Rule.DEVICE_SILENT_URGENT in rules:
            counts["urgent"] += 1
        elif Rule.DEVICE_SILENT_WARN in rules:
            counts["warn"] += 1
    return counts


def partition_is_current(
    last: tuple[int, datetime] | None,
    highwater: int | None,
    position: int | None,
    now: datetime,
    guard: timedelta,
) -> bool:
    """Whether the detection lane has caught up with a partition well enough for the timer.

    `last` is (offset, received_at) of the newest record this worker ran through the
    detectors since it got the partition; `highwater` the partition's log end offset as last
    fetched; `position` the consumer's fetch position. Readings still waiting in Kafka must not
    count as missing, so a partition whose backlog is older than `guard` is not judged.
    """
    if last is None:
        return highwater is not None and position is not None and position >= highwater
    offset, received_at = last
    if highwater is None or highwater <= offset + 1:
        return True
    return received_at >= now - guard


@dataclass(slots=True)
class PatientOutcome:
    """What one patient's records (or a timer pass) came to: the new state and the detections."""

    patient_id: str
    partition: int
    state: DetectorState
    found: list[Detection]
    received: dict[datetime, datetime]
    sources: list[Source]


class DetectionPipeline:
    """Runs batches and timer passes; owns nothing but references to its tables and sinks."""

    def __init__(
        self,
        *,
        states: StateStore,
        plans: PlanBook,
        devices: DeviceClassSource,
        publish: Publish,
        dead_letters: DeadLetters,
        retries: int = 5,
        yield_every: int = 64,
        collection: CollectionSource | None = None,
        decode: Decode = decode_record,
    ) -> None:
        self._states = states
        self._decode = decode
        self._collection = collection
        self._plans = plans
        self._devices = devices
        self._publish = publish
        self._dead_letters = dead_letters
        self._retries = max(1, retries)
        self._yield_every = yield_every
        self.lock = asyncio.Lock()
        # partition -> (offset, received_at) of the newest record processed since assignment
        self.progress: dict[int, tuple[int, datetime]] = {}

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.progress.pop(p, None)

    async def process(self, records: Sequence[tuple[int, int, bytes | None]]) -> int:
        """Run one batch of (partition, offset, value) records; returns detections published."""
        started = time.monotonic()
        grouped = group_records(records, self._decode)
        metrics.DETECTION_RECORDS.inc(grouped.records - grouped.quarantined - grouped.undecodable)
        if grouped.quarantined:
            metrics.DETECTION_SKIPPED.labels(reason="quarantined").inc(grouped.quarantined)
        if grouped.undecodable:
            metrics.DETECTION_SKIPPED.labels(reason="undecodable").inc(grouped.undecodable)
        device_ids = {d for g in grouped.patients.values() for d in g.by_device}
        classes = await self._devices.classes_of(device_ids) if device_ids else {}
        async with self.lock:
            outcomes: list[PatientOutcome] = []
            refused: list[tuple[bytes, str]] = []
            for i, group in enumerate(grouped.patients.values()):
                if i and i % self._yield_every == 0:
                    await asyncio.sleep(0)  # let the storage lane and heartbeats run
                try:
                    state, found = self._detect(group, classes, self._states.get(group.patient_id))
                except Exception:
                    outcome = self._detect_one_by_one(group, classes, refused)
                    if outcome is not None:
                        outcomes.append(outcome)
                    continue
                outcomes.append(
                    PatientOutcome(group.patient_id, group.partition, state, found, group.received, group.sources)
                )
            offsets = {p: seen[0] for p, seen in grouped.progress.items()}
            published = await self._commit(outcomes, offsets, by="batch")
        for raw, error in refused:
            log.warning("detectors refused a record", error=error)
            metrics.DETECTION_FAILURES.labels(reason="detection_refused").inc()
            await self._dead_letters.send("detection_refused", error, raw)
        for partition, seen in grouped.progress.items():
            previous = self.progress.get(partition)
            if previous is None or seen[0] > previous[0]:
                self.progress[partition] = seen
        metrics.DETECTION_BATCH_SECONDS.observe(time.monotonic() - started)
        return published

    def _detect(
        self, group: PatientRecords, classes: dict[str, str], state: DetectorState
    ) -> tuple[DetectorState, list[Detection]]:
        plan = self._plans.plan_for(group.patient_id)
        state, found = detect_readings(group.patient_id, plan, state, group.readings)
        devices = [(d, classes[d], rs) for d, rs in group.by_device.items() if d in classes]
        if devices:
            state, contact = observe_devices(group.patient_id, state, devices)
            if contact:
                found = sorted([*found, *contact], key=lambda d: d.detected_at)
        return state, found

    def _detect_one_by_one(
        self, group: PatientRecords, classes: dict[str, str], refused: list[tuple[bytes, str]]
    ) -> PatientOutcome | None:
        """The detectors refused a patient's records taken together: run them one record at a
        time, so that only the records they refuse are left out (and dead-lettered)."""
        state = self._states.get(group.patient_id)
        found: list[Detection] = []
        kept: list[Source] = []
        for source, batch in zip(group.sources, group.batches, strict=True):
            one = PatientRecords(
                group.patient_id, group.partition, list(batch.readings), {batch.device_id: list(batch.readings)}
            )
            try:
                state, more = self._detect(one, classes, state)
            except Exception as exc:
                refused.append((source.value(), error_detail(exc)))
                continue
            found += more
            kept.append(source)
        if not kept:
            return None
        return PatientOutcome(group.patient_id, group.partition, state, found, group.received, kept)

    async def run_due(self, now: datetime, partitions: frozenset[int]) -> int:
        """Judge the clock-driven rules for the patients of `partitions`; returns detections published."""
        started = time.monotonic()
        withdrawn: frozenset[str] = frozenset()
        if self._collection is not None:
            withdrawn = await self._collection.withdrawn(p for p, _, _ in self._states.owned(partitions))
        async with self.lock:
            outcomes: list[PatientOutcome] = []
            patients = 0
            silent = {"warn": 0, "urgent": 0}
            for patient_id, partition, state in self._states.owned(partitions):
                patients += 1
                if patients % self._yield_every == 0:
                    await asyncio.sleep(0)
                if patient_id in withdrawn:
                    # Collection withdrawn: the bridge refuses their readings, so silence and
                    # missed measurements are the patient's choice, not a finding (ADR 0024).
                    continue
                try:
                    new_state, found = detect_due(patient_id, self._plans.plan_for(patient_id), state, now)
                except Exception:
                    log.exception("timer detectors failed for a patient")
                    metrics.DETECTION_FAILURES.labels(reason="due_failed").inc()
                    continue
                if found or new_state != state:
                    outcomes.append(PatientOutcome(patient_id, partition, new_state, found, {}, []))
                for level, count in silent_devices(new_state).items():
                    silent[level] += count
            published = await self._commit(outcomes, {}, by="timer")
        metrics.DETECTION_PATIENTS.set(patients)
        for level, count in silent.items():
            metrics.SILENT_DEVICES.labels(level=level).set(count)
        metrics.DETECTION_DUE_SECONDS.observe(time.monotonic() - started)
        return published

    async def _commit(self, outcomes: list[PatientOutcome], offsets: dict[int, int], by: str) -> int:
        """Publish the detections, then save the states of the patients whose detections are in."""
        if not outcomes:
            return 0
        produced_at = datetime.now(UTC)
        detections = [(i, o.patient_id.encode(), d) for i, o in enumerate(outcomes) for d in o.found]
        records = [
            (key, encode(to_record(d, received_at=outcomes[i].received.get(d.detected_at), produced_at=produced_at)))
            for i, key, d in detections
        ]
        failed = {
            detections[n][0] for n, error in enumerate(await self._deliver("publish", self._publish, records)) if error
        }
        to_save = [o for i, o in enumerate(outcomes) if i not in failed]
        states = [(o.patient_id, o.partition, o.state) for o in to_save]
        errors = await self._deliver("save state", self._states.save, states)
        not_saved = sum(1 for e in errors if e is not None)
        metrics.STATES_SAVED.labels(by=by).inc(len(errors) - not_saved)
        if not_saved:
            # The detections are out and this worker goes on from the new state; only a crash
            # before the next successful save could repeat them (same ids).
            metrics.DETECTION_FAILURES.labels(reason="state_not_saved").inc(not_saved)
            log.error("detector states not saved", count=not_saved, error=str(next(e for e in errors if e)))
        if to_save:
            marks = [(p, offsets.get(p)) for p in sorted({o.partition for o in to_save})]
            if any(await self._deliver("seal state", self._states.seal, marks)):
                log.error("state marker not written")
        for i in sorted(failed):
            metrics.DETECTION_FAILURES.labels(reason="publish_failed").inc()
            await self._dead_letter_all("detection_publish_failed", "detections not published", outcomes[i].sources)
        acked = datetime.now(UTC)
        count = 0
        for i, _, d in detections:
            if i in failed:
                continue
            count += 1
            metrics.DETECTIONS.labels(rule=d.rule.value, kind=d.kind.value, severity=d.severity.value).inc()
            received = outcomes[i].received.get(d.detected_at)
            if received is not None:
                metrics.DETECTION_LATENCY.observe(max(0.0, (acked - received).total_seconds()))
        return count

    async def _deliver(
        self, what: str, send: Callable[..., Awaitable[Awaitable[object]]], items: Sequence[tuple[Any, ...]]
    ) -> list[BaseException | None]:
        """Send every item (`await send(*item)` hands it to the producer and returns the ack future),
        wait for all acks together, retry the failed ones (stamina backoff, `retries` attempts in
        all); returns each item's error."""
        errors: list[BaseException | None] = [None] * len(items)
        todo = list(range(len(items)))

        async def attempt() -> None:
            nonlocal todo
            acks: list[tuple[int, Awaitable[object]]] = []
            for n in todo:
                try:
                    acks.append((n, await send(*items[n])))
                    errors[n] = None
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    errors[n] = exc
            results = await asyncio.gather(*(ack for _, ack in acks), return_exceptions=True)
            for (n, _), result in zip(acks, results, strict=True):
                errors[n] = result if isinstance(result, BaseException) else None
            todo = [n for n in todo if errors[n] is not None]
            if todo:
                raise _UndeliveredError(f"{what}: {len(todo)} not acknowledged: {errors[todo[0]]}")

        if items:
            try:
                await bounded((_UndeliveredError,), self._retries)(attempt)
            except _UndeliveredError as exc:
                log.warning(f"{what} failed; giving up", error=str(exc))
        return errors

    async def _dead_letter_all(self, reason: str, detail: str, sources: Sequence[Source]) -> None:
        await self._dead_letters.send_all(reason, detail, [s.value() for s in sources])


class _UndeliveredError(Exception):
    """Some items of a delivery were not acknowledged (retried, then reported per item)."""
