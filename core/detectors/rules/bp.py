"""Blood-pressure crisis (>= 180/120) confirmed by a repeat reading.

reference/clinical.md (AHA home BP guidance): wait and re-measure; alert only if the repeat is
still >= 180/120; a single high reading is "confirm", not "emergency". So:
- a first reading >= 180 systolic or >= 120 diastolic raises `bp_crisis_unconfirmed` at low
  severity (the patient is asked to re-measure);
- a repeat taken `min_gap_s` to `confirm_window_s` later that is still high raises
  `bp_crisis_confirmed` (care-plan severity, critical by default) and clears the unconfirmed
  episode it supersedes;
- a normal repeat in that window clears the unconfirmed episode and raises nothing;
- the confirmed episode lasts until a normal reading clears it (no re-raise meanwhile).

Systolic and diastolic readings with the same timestamp are one measurement.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any, Final

import msgspec

from core.careplan import BpCrisis, CarePlan
from core.detectors.episodes import EpisodeTracker
from core.detectors.model import Detection, Episode, iso, latest_ts, new_readings
from core.rules import Rule, Severity
from core.wire import Reading

BP_METRICS: Final = frozenset({"bp_systolic", "bp_diastolic"})


class BpMeasurement(msgspec.Struct, frozen=True, array_like=True):
    ts: datetime
    systolic: float | None
    diastolic: float | None

    def evidence(self) -> dict[str, Any]:
        return {"ts": iso(self.ts), "systolic": self.systolic, "diastolic": self.diastolic}


class BpState(msgspec.Struct, frozen=True, kw_only=True):
    last_ts: datetime | None = None
    unconfirmed: Episode | None = None
    first: BpMeasurement | None = None
    confirmed: Episode | None = None


def _is_high(m: BpMeasurement, cfg: BpCrisis) -> bool:
    return (m.systolic is not None and m.systolic >= cfg.systolic) or (
        m.diastolic is not None and m.diastolic >= cfg.diastolic
    )


def _measurements(batch: list[Reading]) -> list[BpMeasurement]:
    out = []
    for ts, group in groupby(batch, key=lambda r: r.ts):
        values = {r.metric: r.value for r in group}
        out.append(BpMeasurement(ts, values.get("bp_systolic"), values.get("bp_diastolic")))
    return out


def detect_bp_crisis(
    patient_id: str, plan: CarePlan, state: BpState, readings: Sequence[Reading]
) -> tuple[BpState, list[Detection]]:
    """Raise "confirm" on a first reading >= 180/120 and the confirmed crisis on a high repeat."""
    cfg = plan.bp_crisis
    batch = new_readings(readings, BP_METRICS, state.last_ts) if cfg.enabled else []
    if not batch:
        return state, []
    min_gap = timedelta(seconds=cfg.min_gap_s)
    window = timedelta(seconds=cfg.confirm_window_s)
    thresholds = {"systolic": cfg.systolic, "diastolic": cfg.diastolic}
    out: list[Detection] = []
    unconfirmed = EpisodeTracker(patient_id, out, [state.unconfirmed])
    confirmed = EpisodeTracker(patient_id, out, [state.confirmed])
    first = state.first

    def evidence(m: BpMeasurement, reason: str) -> dict[str, Any]:
        return {
            "reason": reason,
            "thresholds": thresholds,
            "first": first.evidence() if first else None,
            "repeat": m.evidence(),
            "confirm_window_s": cfg.confirm_window_s,
            "window": {"start": iso(first.ts if first else m.ts), "end": iso(m.ts)},
        }

    for m in _measurements(batch):
        high = _is_high(m, cfg)
        if confirmed.is_open:
            if not high:
                confirmed.clear(at=m.ts, evidence=evidence(m, "normal reading"))
            continue
        since_first = m.ts - first.ts if first is not None else None
        if since_first is not None and since_first > window:
            # No repeat in time: the "confirm" episode stays open for a clinician to follow up,
            # but this reading starts afresh.
            unconfirmed.drop()
            first = since_first = None
        if since_first is not None and since_first < min_gap:
            continue  # too soon to count as a re-measurement
        if high and first is None:
            first = m
            unconfirmed.raise_episode(
                Rule.BP_CRISIS_UNCONFIRMED,
                Severity.LOW,
                at=m.ts,
                evidence={
                    "reason": "first reading >= threshold: re-measure",
                    "thresholds": thresholds,
                    "first": m.evidence(),
                    "confirm_window_s": cfg.confirm_window_s,
                },
            )
        elif first is not None:
            reason = "high repeat" if high else "normal repeat"
            unconfirmed.clear(at=m.ts, evidence=evidence(m, reason))
            if high:
                confirmed.raise_episode(
                    Rule.BP_CRISIS_CONFIRMED,
                    cfg.confirmed_severity,
                    at=m.ts,
                    episode_start=first.ts,
                    evidence=evidence(m, reason),
                )
            first = None
    new_state = BpState(
        last_ts=latest_ts(batch, state.last_ts),
        unconfirmed=unconfirmed.episode,
        first=first,
        confirmed=confirmed.episode,
    )
    return new_state, out
