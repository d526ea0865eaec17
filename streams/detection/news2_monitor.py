"""NEWS2 over a patient's stream of readings.

The latest value of each NEWS2 parameter is kept in state; at every distinct reading time the
set is scored (parameters older than the plan's `news2.max_age_s` count as not scored; oxygen
comes from the care plan; consciousness has no device metric, so it is always listed as not
scored). Alerting follows the band (reference/clinical.md, clinical response table):
- a higher band raises at once (and clears the lower band's episode, which it supersedes),
  except the low band (aggregate 1-4, no 3 in a single parameter), which must hold for
  `news2.low_sustained_s` first: one reading of SpO2 95 % or a pulse of 91 is a wearable's
  noise, not a finding (alert fatigue, clinical.md); a pending low band that turns into a
  higher one raises that one at once;
- a lower band must hold for `news2.step_down_s` before the episode steps down, so a score
  wobbling across a band edge does not open and close alerts;
- an incomplete score is a lower bound of the full one, so raising on it is safe; the
  detection's evidence lists what was missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any, Final

import msgspec

from core.careplan import CarePlan
from core.rules import Rule
from core.wire import Reading
from streams.detection.model import (
    Detection,
    Episode,
    clear_detection,
    episode_of,
    iso,
    latest_ts,
    new_readings,
    raise_detection,
)
from streams.detection.news2 import BAND_RANK, News2Input, News2Score, score_news2

NEWS2_METRICS: Final = frozenset({"resp_rate", "spo2", "bp_systolic", "heart_rate", "body_temp"})
LOW_RANK: Final = BAND_RANK[Rule.NEWS2_LOW]


class News2Param(msgspec.Struct, frozen=True, array_like=True):
    value: float
    ts: datetime


class News2State(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    latest: dict[str, News2Param] = msgspec.field(default_factory=dict)
    last_ts: datetime | None = None
    open: Episode | None = None
    lower_since: datetime | None = None
    low_since: datetime | None = None  # the low band pending since (no episode open)


def _observations(
    latest: dict[str, News2Param], at: datetime, max_age: timedelta, on_oxygen: bool
) -> tuple[News2Input, dict[str, News2Param]]:
    fresh = {name: p for name, p in latest.items() if at - p.ts <= max_age}
    obs = News2Input(
        resp_rate=fresh["resp_rate"].value if "resp_rate" in fresh else None,
        spo2=fresh["spo2"].value if "spo2" in fresh else None,
        on_oxygen=on_oxygen,
        bp_systolic=fresh["bp_systolic"].value if "bp_systolic" in fresh else None,
        heart_rate=fresh["heart_rate"].value if "heart_rate" in fresh else None,
        body_temp=fresh["body_temp"].value if "body_temp" in fresh else None,
    )
    return obs, fresh


def _evidence(score: News2Score, fresh: dict[str, News2Param], reason: str) -> dict[str, Any]:
    # Built only for a detection: scoring happens at every reading time, detections rarely.
    used = {name: {"value": p.value, "ts": iso(p.ts)} for name, p in fresh.items()}
    return {
        "reason": reason,
        "total": score.total,
        "scores": score.scores,
        "missing": list(score.missing),
        "complete": score.complete,
        "scale": score.scale,
        "risk": score.risk.value,
        "values": used,
    }


def detect_news2(
    patient_id: str, plan: CarePlan, state: News2State, readings: Sequence[Reading]
) -> tuple[News2State, list[Detection]]:
    """Score NEWS2 at each new reading time; raise on escalation, step down after a hold."""
    settings = plan.news2
    if not settings.enabled:
        return state, []
    batch = new_readings(readings, NEWS2_METRICS, state.last_ts)
    if not batch:
        return state, []
    latest = dict(state.latest)
    open_ = state.open
    lower_since = state.lower_since
    low_since = state.low_since
    max_age = timedelta(seconds=settings.max_age_s)
    step_down = timedelta(seconds=settings.step_down_s)
    low_hold = timedelta(seconds=settings.low_sustained_s)
    out: list[Detection] = []
    for at, group in groupby(batch, key=lambda r: r.ts):
        for r in group:
            latest[r.metric] = News2Param(r.value, at)
        obs, used = _observations(latest, at, max_age, plan.on_oxygen)
        score = score_news2(obs, scale=settings.spo2_scale)
        current = BAND_RANK[open_.rule if open_ else None]
        new = BAND_RANK[score.rule]
        if new == LOW_RANK and open_ is None and low_hold:
            low_since = low_since or at
            if at - low_since < low_hold:
                continue
        elif new <= current:
            low_since = None
        if new == current:
            lower_since = None
            continue
        if new < current:
            lower_since = lower_since or at
            if at - lower_since < step_down:
                continue
        reason = "escalated" if new > current else "stepped_down"
        if open_ is not None:
            out.append(clear_detection(patient_id, open_, at=at, evidence=_evidence(score, used, reason)))
            open_ = None
        if score.rule is not None:
            evidence = _evidence(score, used, reason)
            started = at
            if new == LOW_RANK and low_since is not None:
                started = low_since
                evidence["held_since"] = iso(low_since)
            det = raise_detection(
                patient_id,
                score.rule,
                score.severity,
                at=at,
                episode_start=started,
                evidence=evidence,
            )
            out.append(det)
            open_ = episode_of(det)
        lower_since = low_since = None
    # Bounded: one entry per NEWS2 parameter.
    new_state = News2State(
        latest=latest,
        last_ts=latest_ts(batch, state.last_ts),
        open=open_,
        lower_since=lower_since,
        low_since=low_since,
    )
    return new_state, out
