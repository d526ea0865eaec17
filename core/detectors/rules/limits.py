"""Out-of-range detection with per-rule sustained duration, repeat count and hysteresis.

Each enabled `core.careplan.Limit` runs a small state machine over its metric's readings
(reference/clinical.md, "Hysteresis": raise SpO2-low at < 90 % sustained 10 min, clear only
at >= 92 % sustained 10 min; a trace oscillating 89/91 raises exactly once):

    idle --beyond--> pending --beyond for sustained_s and repeat_count readings--> raised
    pending --reading at/inside clear_at, or no reading beyond for max_gap_s--> idle
    raised --readings at/inside clear_at for clear_sustained_s--> idle (a "clear" detection)

Readings in the dead band (between the raise and the clear level) keep a pending episode
going without counting towards it, and break a clearing run: so an 89/91 trace raises once,
after 10 minutes, and never clears until the patient holds 92 % or more for 10 minutes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec

from core.careplan import CarePlan, Limit
from core.detectors.episodes import EpisodeTracker
from core.detectors.model import Detection, Episode, iso, latest_ts, new_readings
from core.wire import Reading


class LimitState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """State of one rule; every field is a scalar, so its size is fixed."""

    last_ts: datetime | None = None
    open: Episode | None = None
    # Pending (not yet raised) or raised episode.
    start: datetime | None = None
    last_beyond: datetime | None = None
    beyond_count: int = 0
    worst: float | None = None
    # Clearing run of a raised episode.
    clear_start: datetime | None = None
    clear_last: datetime | None = None


class LimitsState(msgspec.Struct, frozen=True, kw_only=True):
    by_rule: dict[str, LimitState] = msgspec.field(default_factory=dict)


class _Machine:
    """Mutable working copy of a LimitState while one batch is processed; the raised episode and
    its clearing run are kept by an EpisodeTracker."""

    def __init__(self, patient_id: str, limit: Limit, state: LimitState, found: list[Detection]) -> None:
        self.limit = limit
        self.episode = EpisodeTracker(
            patient_id, found, [state.open], hold_since=state.clear_start, hold_last=state.clear_last
        )
        self.start = state.start
        self.last_beyond = state.last_beyond
        self.count = state.beyond_count
        self.worst = state.worst
        self.max_gap = timedelta(seconds=limit.max_gap_s)
        self.sustained = timedelta(seconds=limit.sustained_s)
        self.clear_sustained = timedelta(seconds=limit.clear_sustained_s)

    def snapshot(self, last_ts: datetime | None) -> LimitState:
        return LimitState(
            last_ts=last_ts,
            open=self.episode.episode,
            start=self.start,
            last_beyond=self.last_beyond,
            beyond_count=self.count,
            worst=self.worst,
            clear_start=self.episode.hold_since,
            clear_last=self.episode.hold_last,
        )

    def _reset(self) -> None:
        self.start = self.last_beyond = self.worst = None
        self.count = 0
        self.episode.break_hold()

    def _worse(self, value: float) -> float:
        if self.worst is None:
            return value
        return min(self.worst, value) if self.limit.direction == "low" else max(self.worst, value)

    def _evidence(self, r: Reading, **extra: Any) -> dict[str, Any]:
        lim = self.limit
        return {
            "metric": lim.metric,
            "value": r.value,
            "worst": self.worst,
            "direction": lim.direction,
            "raise_at": lim.raise_at,
            "clear_at": lim.clear_at,
            "sustained_s": lim.sustained_s,
            "repeat_count": lim.repeat_count,
            "clear_sustained_s": lim.clear_sustained_s,
            "readings_beyond": self.count,
            "window": {"start": iso(self.start or r.ts), "end": iso(r.ts)},
            **extra,
        }

    def step(self, r: Reading) -> None:
        lim, t, v = self.limit, r.ts, r.value
        if not self.episode.is_open:
            if self.last_beyond is not None and t - self.last_beyond > self.max_gap:
                self._reset()
            if lim.beyond(v):
                if self.start is None:
                    self.start = t
                self.count += 1
                self.last_beyond = t
                self.worst = self._worse(v)
                if t - self.start >= self.sustained and self.count >= lim.repeat_count:
                    self.episode.raise_episode(
                        lim.rule, lim.severity, at=t, episode_start=self.start, evidence=self._evidence(r)
                    )
            elif lim.recovered(v):
                self._reset()
            return
        if lim.beyond(v):
            self.worst = self._worse(v)
            self.count += 1
        if not lim.recovered(v):
            self.episode.break_hold()
            return
        clear_start = self.episode.held(t, self.clear_sustained, max_gap=self.max_gap)
        if clear_start is not None:
            self.episode.clear(at=t, evidence=self._evidence(r, cleared_from=iso(clear_start)))
            self._reset()


def detect_limits(
    patient_id: str, plan: CarePlan, state: LimitsState, readings: Sequence[Reading]
) -> tuple[LimitsState, list[Detection]]:
    """Run every enabled limit of the plan over the new readings of its metric.

    State is kept per rule; the state of a rule the plan no longer has (or disabled) is
    dropped, so the state stays bounded by the number of rules.
    """
    by_rule: dict[str, LimitState] = {}
    out: list[Detection] = []
    for limit in plan.limits:
        if not limit.enabled:
            continue
        previous = state.by_rule.get(limit.rule.value, LimitState())
        batch = new_readings(readings, limit.metric, previous.last_ts)
        if not batch:
            by_rule[limit.rule.value] = previous
            continue
        machine = _Machine(patient_id, limit, previous, out)
        for r in batch:
            machine.step(r)
        by_rule[limit.rule.value] = machine.snapshot(latest_ts(batch, previous.last_ts))
    out.sort(key=lambda d: d.detected_at)
    return LimitsState(by_rule=by_rule), out
