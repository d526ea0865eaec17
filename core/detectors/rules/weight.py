"""Heart-failure weight gain over 1 day and 7 days (and 3 days when the plan sets it).

reference/clinical.md: >= 1.4 kg (3 lb) in 1 day or >= 2.3 kg (5 lb) in 1 week -> call; the
limits are care-plan settings and the rule is on only for patients whose plan enables it.
A plan may add a 3-day window (`gain_3d_kg`, e.g. "> 2 kg in 3 days" self-care advice).

Gain is the new weight minus the lowest weight of the preceding window (1 day or 7 days,
plus `slack_s` so that yesterday's weigh-in at a slightly earlier hour still counts). Gains are
rounded to 1 g before the comparison, so 81.4 - 80.0 counts as 1.4 kg despite binary floats.

The lowest weight of any window that ends "now" is found with a monotonic queue: a weight is
dropped once a later, lighter-or-equal weight exists, because it can never again be the minimum
of a window ending later. The queue covers at most 7 days plus slack and is capped in length.
Each rule is an episode: it raises once, and clears at the first weighing whose gain over the
episode's reference weight (the minimum it was raised against) is back under the limit, i.e.
when the retained fluid is gone, not merely when the last day was stable.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec

from core.careplan import CarePlan
from core.detectors.episodes import EpisodeTracker
from core.detectors.model import Detection, Episode, iso, latest_ts, new_readings
from core.rules import Rule
from core.wire import Reading

MAX_POINTS: Final = 512
_EPSILON: Final = 1e-9


class WeightPoint(msgspec.Struct, frozen=True, array_like=True):
    ts: datetime
    kg: float


class WeightState(msgspec.Struct, frozen=True, kw_only=True):
    last_ts: datetime | None = None
    minima: tuple[WeightPoint, ...] = ()
    open: dict[str, Episode] = msgspec.field(default_factory=dict)
    reference_kg: dict[str, float] = msgspec.field(default_factory=dict)  # per open episode


def _window_min(minima: deque[WeightPoint], since: datetime) -> WeightPoint | None:
    # Weights in the queue increase with time, so the first point in the window is its minimum.
    for p in minima:
        if p.ts >= since:
            return p
    return None


def detect_weight_gain(
    patient_id: str, plan: CarePlan, state: WeightState, readings: Sequence[Reading]
) -> tuple[WeightState, list[Detection]]:
    """Raise `hf_weight_gain_1d` / `_3d` / `_7d` when a weighing crosses the plan's limits."""
    cfg = plan.hf_weight
    batch = new_readings(readings, "body_weight", state.last_ts) if cfg.enabled else []
    if not batch:
        return state, []
    slack = timedelta(seconds=cfg.slack_s)
    rules = [(Rule.HF_WEIGHT_GAIN_1D, timedelta(days=1), cfg.gain_1d_kg)]
    if cfg.gain_3d_kg is not None:
        rules.append((Rule.HF_WEIGHT_GAIN_3D, timedelta(days=3), cfg.gain_3d_kg))
    rules.append((Rule.HF_WEIGHT_GAIN_7D, timedelta(days=7), cfg.gain_7d_kg))
    horizon = timedelta(days=7) + slack
    minima = deque(state.minima, maxlen=MAX_POINTS)
    out: list[Detection] = []
    episodes = EpisodeTracker(patient_id, out, state.open.values())
    reference = dict(state.reference_kg)
    for r in batch:
        while minima and minima[0].ts < r.ts - horizon:
            minima.popleft()
        for rule, span, limit in rules:
            start = r.ts - span - slack
            ref = _window_min(minima, start)
            gain = round(r.value - ref.kg, 3) if ref is not None else None
            evidence: dict[str, Any] = {
                "weight_kg": r.value,
                "reference_kg": ref.kg if ref else None,
                "reference_ts": iso(ref.ts) if ref else None,
                "gain_kg": gain,
                "limit_kg": limit,
                "window": {"start": iso(start), "end": iso(r.ts)},
            }
            if not episodes.has(rule):
                if ref is not None and gain is not None and gain + _EPSILON >= limit:
                    episodes.raise_episode(rule, cfg.severity, at=r.ts, evidence=evidence)
                    reference[rule.value] = ref.kg
            elif round(r.value - reference[rule.value], 3) + _EPSILON < limit:
                evidence["episode_reference_kg"] = reference.pop(rule.value)
                episodes.clear(at=r.ts, evidence=evidence, rule=rule)
        while minima and minima[-1].kg >= r.value:
            minima.pop()
        minima.append(WeightPoint(r.ts, r.value))
    new_state = WeightState(
        last_ts=latest_ts(batch, state.last_ts), minima=tuple(minima), open=episodes.episodes, reference_kg=reference
    )
    return new_state, out
