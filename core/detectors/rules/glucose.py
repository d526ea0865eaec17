"""Glucose levels (ADA), per reference/clinical.md.

- level 1 hypoglycaemia: < 70 and >= 54 mg/dL -> `glucose_low_l1`;
- level 2 hypoglycaemia: < 54 mg/dL -> `glucose_low_l2` (a reading of 53 is level 2 only);
- hyperglycaemia: above the care plan's limit (default > 250 mg/dL) -> `glucose_high`.

A hypoglycaemia episode raises once per level reached (level 1 then level 2 raises both; a
level 2 reading that rises to level 1 raises nothing new) and ends when readings have stayed
at or above the level 1 limit for `clear_sustained_s`; every level raised in it is then cleared.
Hyperglycaemia is a separate episode with the same clearing rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec

from core.careplan import CarePlan, GlucoseLimits
from core.detectors.episodes import EpisodeTracker
from core.detectors.model import Detection, Episode, iso, latest_ts, new_readings
from core.rules import Rule, Severity
from core.wire import Reading


class GlucoseState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    last_ts: datetime | None = None
    hypo: dict[str, Episode] = msgspec.field(default_factory=dict)  # at most L1 and L2
    hypo_recovering_since: datetime | None = None
    hyper: Episode | None = None
    hyper_recovering_since: datetime | None = None


_HYPO: Final = (Rule.GLUCOSE_LOW_L1, Rule.GLUCOSE_LOW_L2)
_HYPER: Final = (Rule.GLUCOSE_HIGH,)


def glucose_level(value: float, cfg: GlucoseLimits) -> Rule | None:
    """The rule a single reading falls under, or None when it is in range."""
    if value < cfg.level2_below:
        return Rule.GLUCOSE_LOW_L2
    if value < cfg.level1_below:
        return Rule.GLUCOSE_LOW_L1
    if cfg.high_above is not None and value > cfg.high_above:
        return Rule.GLUCOSE_HIGH
    return None


def _severity(rule: Rule, cfg: GlucoseLimits) -> Severity:
    return {
        Rule.GLUCOSE_LOW_L1: cfg.level1_severity,
        Rule.GLUCOSE_LOW_L2: cfg.level2_severity,
        Rule.GLUCOSE_HIGH: cfg.high_severity,
    }[rule]


def detect_glucose(
    patient_id: str, plan: CarePlan, state: GlucoseState, readings: Sequence[Reading]
) -> tuple[GlucoseState, list[Detection]]:
    """Classify each new glucose reading and raise / clear hypo- and hyperglycaemia episodes:
    both hypoglycaemia levels belong to one episode, hyperglycaemia has an episode of its own."""
    cfg = plan.glucose
    batch = new_readings(readings, "glucose", state.last_ts) if cfg.enabled else []
    if not batch:
        return state, []
    hold = timedelta(seconds=cfg.clear_sustained_s)
    out: list[Detection] = []
    hypo = EpisodeTracker(patient_id, out, state.hypo.values(), hold_since=state.hypo_recovering_since)
    hyper = EpisodeTracker(patient_id, out, [state.hyper], hold_since=state.hyper_recovering_since)
    for r in batch:
        level = glucose_level(r.value, cfg)
        evidence: dict[str, Any] = {
            "value": r.value,
            "level": level.value if level else "in_range",
            "thresholds": {
                "level1_below": cfg.level1_below,
                "level2_below": cfg.level2_below,
                "high_above": cfg.high_above,
            },
            "ts": iso(r.ts),
        }
        # Hypoglycaemia first: a reading's detections keep that order.
        for episodes, levels in ((hypo, _HYPO), (hyper, _HYPER)):
            if level is not None and level in levels:
                episodes.break_hold()
                # Once per level reached: level 2 after level 1 raises, level 1 after 2 does not.
                if not episodes.is_open or (level is Rule.GLUCOSE_LOW_L2 and not episodes.has(level)):
                    episodes.raise_episode(level, _severity(level, cfg), at=r.ts, evidence=evidence)
            elif (since := episodes.held(r.ts, hold)) is not None:
                evidence["in_range_since"] = iso(since)
                episodes.clear(at=r.ts, evidence=evidence)
    new_state = GlucoseState(
        last_ts=latest_ts(batch, state.last_ts),
        hypo=hypo.episodes,
        hypo_recovering_since=hypo.hold_since,
        hyper=hyper.episode,
        hyper_recovering_since=hyper.hold_since,
    )
    return new_state, out
