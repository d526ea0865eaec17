"""Adherence gaps: scheduled measurements not received, medication doses not taken.

Schedules come from the care plan, in the plan's local time zone:
- times of day: each scheduled time has a window of +/- tolerance (measurements) or
  +/- window (doses); a reading inside it satisfies the slot (the nearest slot, when windows
  overlap);
- times per day: the slot is the local calendar day and needs that many distinct readings.

Two pure functions share one state:
- `observe_adherence` records which slots readings satisfy (idempotent: a slot keeps the
  distinct reading times it counted, so replays change nothing). A reading that arrives after
  its slot was reported missed (a device flushing its offline queue) clears that detection.
- `evaluate_adherence(now)` judges every slot whose window closed at least
  `adherence_grace_s` before `now` and after the previous evaluation; unsatisfied slots raise
  `measurement_missed` / `dose_missed`, dated at the window's end, with ids derived from the
  schedule and slot, so evaluating twice never reports a slot twice.

Monitoring starts at the plan's `effective_from` (only slots whose window opens after it are
judged) or, without one, at the first evaluation; an evaluation never looks back more than
`RETENTION` (3 days), and slot records older than that are pruned, so the state stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from typing import Final
from zoneinfo import ZoneInfo

import msgspec

from core.careplan import CarePlan
from core.detectors.model import (
    Detection,
    Episode,
    as_utc,
    clear_detection,
    episode_of,
    iso,
    new_readings,
    raise_detection,
)
from core.rules import Rule, Severity
from core.wire import Reading

RETENTION: Final = timedelta(days=3)
_DAY: Final = timedelta(days=1)
# Slot records outlive the judging horizon by two days: a per-day slot is keyed by the day
# before its window closes, and a time slot's window may straddle midnight.
_KEEP: Final = RETENTION + 2 * _DAY


@dataclass(frozen=True, slots=True)
class Schedule:
    """A measurement or medication schedule of the plan, in one shape."""

    key: str  # "measurement:<metric>" or "dose:<dose_id>"
    rule: Rule
    severity: Severity
    metric: str
    dose_id: str | None
    times: tuple[time, ...]
    per_day: int | None
    tolerance: timedelta

    def matches(self, r: Reading) -> bool:
        return r.metric == self.metric and (self.dose_id is None or r.dose_id == self.dose_id)

    def expected_gap(self) -> timedelta:
        """Longest time between two consecutive expected readings (a day for per-day counts)."""
        if not self.times:
            return _DAY
        minutes = sorted(t.hour * 60 + t.minute for t in self.times)
        gaps = [b - a for a, b in pairwise(minutes)]
        gaps.append(24 * 60 - minutes[-1] + minutes[0])
        return timedelta(minutes=max(gaps))


@dataclass(frozen=True, slots=True)
class Slot:
    key: str  # local date, or local date and time: "2025-03-01" / "2025-03-01T08:00"
    scheduled: datetime  # UTC; the window's start for per-day slots
    start: datetime
    end: datetime
    required: int
    whole_day: bool

    def contains(self, ts: datetime) -> bool:
        # A day is [midnight, next midnight); a time window includes both tolerance edges.
        if self.whole_day:
            return self.start <= ts < self.end
        return self.start <= ts <= self.end


def schedules_of(plan: CarePlan) -> list[Schedule]:
    out = [
        Schedule(
            key=f"measurement:{m.metric}",
            rule=Rule.MEASUREMENT_MISSED,
            severity=m.severity,
            metric=m.metric,
            dose_id=None,
            times=m.times_of_day,
            per_day=m.times_per_day,
            tolerance=timedelta(seconds=m.tolerance_s),
        )
        for m in plan.measurements
    ]
    out.extend(
        Schedule(
            key=f"dose:{d.dose_id}",
            rule=Rule.DOSE_MISSED,
            severity=d.severity,
            metric="medication_taken",
            dose_id=d.dose_id,
            times=d.times_of_day,
            per_day=None,
            tolerance=timedelta(seconds=d.window_s),
        )
        for d in plan.medications
    )
    return out


def _slots(s: Schedule, zone: ZoneInfo, lo: datetime, hi: datetime) -> Iterator[Slot]:
    """Slots of local days from around `lo` to around `hi` (callers filter exactly)."""
    day = (lo - _DAY).astimezone(zone).date()
    last = (hi + _DAY).astimezone(zone).date()
    while day <= last:
        if s.per_day is not None:
            start = datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
            end = datetime.combine(day + _DAY, time(), tzinfo=zone).astimezone(UTC)
            yield Slot(day.isoformat(), start, start, end, s.per_day, whole_day=True)
        for t in s.times:
            at = datetime.combine(day, t, tzinfo=zone).astimezone(UTC)
            key = f"{day.isoformat()}T{t.strftime('%H:%M')}"
            yield Slot(key, at, at - s.tolerance, at + s.tolerance, 1, whole_day=False)
        day += _DAY


def _slot_for(s: Schedule, zone: ZoneInfo, ts: datetime) -> Slot | None:
    inside = [slot for slot in _slots(s, zone, ts, ts) if slot.contains(ts)]
    return min(inside, key=lambda slot: abs(ts - slot.scheduled), default=None)


class ScheduleState(msgspec.Struct, frozen=True, kw_only=True):
    # slot key -> epoch milliseconds of the distinct readings counted (at most `required`)
    seen: dict[str, tuple[int, ...]] = msgspec.field(default_factory=dict)
    # slot key -> the missed detection raised for it, so that a late reading can clear it
    missed: dict[str, Episode] = msgspec.field(default_factory=dict)


class AdherenceState(msgspec.Struct, frozen=True, kw_only=True):
    evaluated_until: datetime | None = None
    schedules: dict[str, ScheduleState] = msgspec.field(default_factory=dict)


def _prune(state: ScheduleState, zone: ZoneInfo, ref: datetime) -> ScheduleState:
    oldest = (ref - _KEEP).astimezone(zone).date().isoformat()
    return ScheduleState(
        seen={k: v for k, v in state.seen.items() if k[:10] >= oldest},
        missed={k: v for k, v in state.missed.items() if k[:10] >= oldest},
    )


def observe_adherence(
    patient_id: str, plan: CarePlan, state: AdherenceState, readings: Sequence[Reading]
) -> tuple[AdherenceState, list[Detection]]:
    """Record the schedule slots these readings satisfy; clear slots reported missed earlier."""
    schedules = schedules_of(plan)
    if not schedules:
        return state, []
    zone = plan.zone
    metrics = frozenset(s.metric for s in schedules)
    batch = new_readings(readings, metrics, None)
    if not batch:
        return state, []
    ref = max(batch[-1].ts, state.evaluated_until or batch[-1].ts)
    out: list[Detection] = []
    updated: dict[str, ScheduleState] = {}
    for s in schedules:
        previous = state.schedules.get(s.key, ScheduleState())
        seen = dict(previous.seen)
        missed = dict(previous.missed)
        for r in batch:
            if not s.matches(r) or r.ts < ref - _KEEP:
                continue
            slot = _slot_for(s, zone, r.ts)
            if slot is None:
                continue
            ms = int(r.ts.timestamp() * 1000)
            counted = seen.get(slot.key, ())
            if ms in counted or len(counted) >= slot.required:
                continue
            seen[slot.key] = tuple(sorted((*counted, ms)))
            episode = missed.get(slot.key)
            if episode is not None and len(seen[slot.key]) >= slot.required:
                out.append(
                    clear_detection(
                        patient_id,
                        episode,
                        at=r.ts,
                        evidence={
                            "reason": "late reading",
                            "schedule": s.key,
                            "slot": slot.key,
                            "reading_ts": iso(r.ts),
                        },
                    )
                )
                del missed[slot.key]
        updated[s.key] = _prune(ScheduleState(seen=seen, missed=missed), zone, ref)
    return AdherenceState(evaluated_until=state.evaluated_until, schedules=updated), out


def evaluate_adherence(
    patient_id: str, plan: CarePlan, state: AdherenceState, now: datetime
) -> tuple[AdherenceState, list[Detection]]:
    """Report the slots whose window closed (plus grace) since the last evaluation unsatisfied."""
    now = as_utc(now)
    cutoff = now - timedelta(seconds=plan.adherence_grace_s)
    effective_from = as_utc(plan.effective_from) if plan.effective_from else None
    watermark = state.evaluated_until
    if watermark is None:
        watermark = effective_from if effective_from is not None else cutoff
    watermark = max(watermark, now - RETENTION)
    if cutoff <= watermark:
        # Nothing closed yet; remember where monitoring starts.
        return AdherenceState(evaluated_until=watermark, schedules=state.schedules), []
    zone = plan.zone
    out: list[Detection] = []
    updated: dict[str, ScheduleState] = {}
    for s in schedules_of(plan):
        previous = state.schedules.get(s.key, ScheduleState())
        missed = dict(previous.missed)
        for slot in _slots(s, zone, watermark, cutoff):
            if not watermark < slot.end <= cutoff:
                continue
            if effective_from is not None and slot.start < effective_from:
                continue
            received = len(previous.seen.get(slot.key, ()))
            if received >= slot.required or slot.key in missed:
                continue
            det = raise_detection(
                patient_id,
                s.rule,
                s.severity,
                at=slot.end,
                episode_start=slot.scheduled,
                key_suffix=f"{s.key}|{slot.key}",
                evidence={
                    "schedule": s.key,
                    "metric": s.metric,
                    "dose_id": s.dose_id,
                    "slot": slot.key,
                    "scheduled_at": iso(slot.scheduled),
                    "received": received,
                    "required": slot.required,
                    "window": {"start": iso(slot.start), "end": iso(slot.end)},
                },
            )
            out.append(det)
            missed[slot.key] = episode_of(det)
        updated[s.key] = _prune(ScheduleState(seen=previous.seen, missed=missed), zone, now)
    out.sort(key=lambda d: d.detected_at)
    return AdherenceState(evaluated_until=cutoff, schedules=updated), out


@dataclass(frozen=True, slots=True)
class ScheduleAdherence:
    """How one schedule was kept over a window: slots whose window closed in it, and how many
    of them received what they required."""

    key: str
    kind: str  # "measurement" or "dose"
    metric: str
    dose_id: str | None
    expected: int
    met: int


def adherence_over(
    plan: CarePlan, readings: Sequence[Reading], start: datetime, end: datetime
) -> list[ScheduleAdherence]:
    """Adherence to each schedule of the plan over [start, end), by the detector's own slots.

    A slot counts when its whole window lies in the range (and after the plan's
    `effective_from`); a reading satisfies the nearest slot whose window holds it, distinct
    times counted once, as `observe_adherence` does. The caller passes the readings of the
    schedules' metrics from `start - 12 h` (the widest tolerance) to `end`."""
    start, end = as_utc(start), as_utc(end)
    if plan.effective_from is not None:
        start = max(start, as_utc(plan.effective_from))
    zone = plan.zone
    out: list[ScheduleAdherence] = []
    for s in schedules_of(plan):
        slots = {slot.key: slot for slot in _slots(s, zone, start, end) if start <= slot.start and slot.end <= end}
        counted: dict[str, set[datetime]] = {}
        for r in readings:
            if not s.matches(r):
                continue
            slot = _slot_for(s, zone, as_utc(r.ts))
            if slot is not None and slot.key in slots:
                counted.setdefault(slot.key, set()).add(as_utc(r.ts))
        met = sum(1 for key, slot in slots.items() if len(counted.get(key, ())) >= slot.required)
        kind = "dose" if s.dose_id is not None else "measurement"
        out.append(ScheduleAdherence(s.key, kind, s.metric, s.dose_id, len(slots), met))
    return out
