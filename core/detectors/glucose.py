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
from typing import Any

import msgspec

from core.careplan import CarePlan, GlucoseLimits
from core.detectors.model import (
    Detection,
    Episode,
    clear_detection,
    episode_of,
    iso,
    latest_ts,
    new_readings,
    raise_detection,
)
from core.rules import Rule, Severity
from core.wire import Reading


class GlucoseState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    last_ts: datetime | None = None
    hypo: dict[str, Episode] = msgspec.field(default_factory=dict)  # at most L1 and L2
    hypo_recovering_since: datetime | None = None
    hyper: Episode | None = None
    hyper_recovering_since: datetime | None = None


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
    """Classify each new glucose reading and raise / clear hypo- and hyperglycaemia episodes."""
    cfg = plan.glucose
    if not cfg.enabled:
        return state, []
    batch = new_readings(readings, "glucose", state.last_ts)
    if not batch:
        return state, []
    hold = timedelta(seconds=cfg.clear_sustained_s)
    hypo = dict(state.hypo)
    hypo_since = state.hypo_recovering_since
    hyper = state.hyper
    hyper_since = state.hyper_recovering_since
    out: list[Detection] = []
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
        if level in (Rule.GLUCOSE_LOW_L1, Rule.GLUCOSE_LOW_L2):
            hypo_since = None
            if not hypo or (level is Rule.GLUCOSE_LOW_L2 and level.value not in hypo):
                det = raise_detection(
                    patient_id,
                    level,
                    _severity(level, cfg),
                    at=r.ts,
                    episode_start=r.ts,
                    evidence=evidence,
                )
                out.append(det)
                hypo[level.value] = episode_of(det)
        elif hypo:
            hypo_since = hypo_since or r.ts
            if r.ts - hypo_since >= hold:
                evidence["in_range_since"] = iso(hypo_since)
                out.extend(clear_detection(patient_id, e, at=r.ts, evidence=evidence) for e in hypo.values())
                hypo, hypo_since = {}, None
        if level is Rule.GLUCOSE_HIGH:
            hyper_since = None
            if hyper is None:
                det = raise_detection(
                    patient_id,
                    level,
                    _severity(level, cfg),
                    at=r.ts,
                    episode_start=r.ts,
                    evidence=evidence,
                )
                out.append(det)
                hyper = episode_of(det)
        elif hyper is not None:
            hyper_since = hyper_since or r.ts
            if r.ts - hyper_since >= hold:
                evidence["in_range_since"] = iso(hyper_since)
                out.append(clear_detection(patient_id, hyper, at=r.ts, evidence=evidence))
                hyper, hyper_since = None, None
    new_state = GlucoseState(
        last_ts=latest_ts(batch, state.last_ts),
        hypo=hypo,
        hypo_recovering_since=hypo_since,
        hyper=hyper,
        hyper_recovering_since=hyper_since,
    )
    return new_state, out
