"""NEWS2 over a patient's stream of readings, whatever order they arrive in.

State keeps, per NEWS2 parameter, the latest reading by its own timestamp (not by arrival):
a reading replaces the kept one only when it was taken later, so a cuff reading flushed after
newer wearable readings, or one with the same timestamp arriving seconds later, is scored,
and an older one arriving late changes nothing (ADR 0015). For a reading (metric, ts) that
arrives twice the first one is kept, as storage keeps it (`ON CONFLICT DO NOTHING`).

The set is scored at every new reading time (the readings of one batch in time order); a
parameter older than the plan's `news2.max_age_s` at that time is not scored. A reading
taken at or before the newest time already scored ("late") is folded into the kept values and
the set is scored again at that newest time, at once, if the late reading is inside its window
there: a late reading that changes the band raises, escalates or starts the step-down hold
like any other. Instants before it are not re-scored: detections already published are never
rewritten. Oxygen comes from the care plan; consciousness (ACVPU) from `consciousness`
observations (patient check-ins, caregivers, clinicians); a score without one inside its
window is "consciousness not reported" in the evidence, never a silent 0.

Alerting follows the band (reference/clinical.md, clinical response table):
- a higher band raises at once (and clears the lower band's episode, which it supersedes),
  except the low band (aggregate 1-4, no 3 in a single parameter), which must hold for
  `news2.low_sustained_s` first: one reading of SpO2 95 % or a pulse of 91 is a wearable's
  noise, not a finding (alert fatigue, clinical.md; ADR 0010); a pending low band that turns
  into a higher one raises that one at once;
- a lower band must hold for `news2.step_down_s` before the episode steps down, so a score
  wobbling across a band edge does not open and close alerts;
- an incomplete score is a lower bound of the full one, so raising on it is safe; the
  detection's evidence lists what was missing.
Detection ids derive from the episode start (a reading time), so a replay of the same
batches from the same saved state yields the same ids; a replayed reading is never newer
than the one kept, so it changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import groupby
from typing import Any, Final

import msgspec

from core.careplan import CarePlan
from core.catalogue import acvpu_level
from core.detectors.episodes import EpisodeTracker
from core.detectors.model import Detection, Episode, iso, new_readings
from core.detectors.news2 import BAND_RANK, News2Input, News2Score, Scale, score_news2
from core.rules import Rule
from core.wire import Reading

NEWS2_METRICS: Final = frozenset({"resp_rate", "spo2", "bp_systolic", "heart_rate", "body_temp", "consciousness"})
LOW_RANK: Final = BAND_RANK[Rule.NEWS2_LOW]
CONSCIOUSNESS_NOT_REPORTED: Final = "not reported"


class News2Param(msgspec.Struct, frozen=True, array_like=True):
    value: float
    ts: datetime


class News2State(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    # Per parameter, the reading taken last (by its timestamp); bounded: one per parameter.
    latest: dict[str, News2Param] = msgspec.field(default_factory=dict)
    # The newest time scored so far.
    last_ts: datetime | None = None
    open: Episode | None = None
    lower_since: datetime | None = None
    low_since: datetime | None = None  # the low band pending since (no episode open)


@lru_cache(maxsize=4096)
def _scored(obs: News2Input, scale: Scale) -> News2Score:
    """`score_news2`, remembered: scoring runs at every reading time and a patient's vitals repeat
    (whole beats, breaths and percent), so most sets of observations were scored before. The
    scores are shared between callers: `_evidence` copies what it keeps."""
    return score_news2(obs, scale=scale)


def _keep(latest: dict[str, News2Param], r: Reading) -> bool:
    """Keep `r` if it was taken after the kept reading of its metric; True if kept."""
    kept = latest.get(r.metric)
    if kept is not None and kept.ts >= r.ts:
        return False
    latest[r.metric] = News2Param(r.value, r.ts)
    return True


def _value(fresh: dict[str, News2Param], name: str) -> float | None:
    p = fresh.get(name)
    return None if p is None else p.value


def _observations(
    latest: dict[str, News2Param], at: datetime, max_age: timedelta, on_oxygen: bool
) -> tuple[News2Input, dict[str, News2Param]]:
    fresh = {name: p for name, p in latest.items() if at - p.ts <= max_age}
    level = _value(fresh, "consciousness")
    obs = News2Input(
        resp_rate=_value(fresh, "resp_rate"),
        spo2=_value(fresh, "spo2"),
        on_oxygen=on_oxygen,
        bp_systolic=_value(fresh, "bp_systolic"),
        heart_rate=_value(fresh, "heart_rate"),
        consciousness=None if level is None else acvpu_level(level),
        body_temp=_value(fresh, "body_temp"),
    )
    return obs, fresh


def _evidence(
    score: News2Score, obs: News2Input, fresh: dict[str, News2Param], reason: str, late: frozenset[str]
) -> dict[str, Any]:
    # Built only for a detection: scoring happens at every reading time, detections rarely.
    used: dict[str, dict[str, Any]] = {name: {"value": p.value, "ts": iso(p.ts)} for name, p in fresh.items()}
    if obs.consciousness is not None:
        used["consciousness"]["value"] = obs.consciousness
    evidence: dict[str, Any] = {
        "reason": reason,
        "total": score.total,
        "scores": dict(score.scores),
        "missing": list(score.missing),
        "complete": score.complete,
        "scale": score.scale,
        "risk": score.risk.value,
        "values": used,
        "consciousness": obs.consciousness or CONSCIOUSNESS_NOT_REPORTED,
    }
    if late:
        evidence["late"] = sorted(late)  # scored when they arrived, after newer readings
    return evidence


def _instants(
    batch: list[Reading], latest: dict[str, News2Param], last_ts: datetime | None, max_age: timedelta
) -> Iterator[tuple[datetime, frozenset[str]]]:
    """The times to score at, in order, updating `latest` as it goes: first the newest time
    already scored if a late reading changed a value that counts there (with the late
    metrics), then each new reading time."""
    late: set[str] = set()
    fresh: list[Reading] = []
    for r in batch:
        if last_ts is not None and r.ts <= last_ts:
            if _keep(latest, r) and last_ts - r.ts <= max_age:
                late.add(r.metric)
        else:
            fresh.append(r)
    if late and last_ts is not None:
        yield last_ts, frozenset(late)
    for at, group in groupby(fresh, key=lambda r: r.ts):
        for r in group:
            _keep(latest, r)
        yield at, frozenset()


def detect_news2(
    patient_id: str, plan: CarePlan, state: News2State, readings: Sequence[Reading]
) -> tuple[News2State, list[Detection]]:
    """Score NEWS2 per parameter's latest reading; raise on escalation, step down after a hold."""
    settings = plan.news2
    if not settings.enabled:
        return state, []
    batch = new_readings(readings, NEWS2_METRICS, None)
    if not batch:
        return state, []
    latest = dict(state.latest)
    last_ts = state.last_ts
    low_since = state.low_since
    max_age = timedelta(seconds=settings.max_age_s)
    step_down = timedelta(seconds=settings.step_down_s)
    low_hold = timedelta(seconds=settings.low_sustained_s)
    out: list[Detection] = []
    # The band's episode; its hold is the lower band's, before the episode steps down.
    band = EpisodeTracker(patient_id, out, [state.open], hold_since=state.lower_since)
    for at, late in _instants(batch, latest, state.last_ts, max_age):
        last_ts = at if last_ts is None or at > last_ts else last_ts
        obs, used = _observations(latest, at, max_age, plan.on_oxygen)
        score = _scored(obs, settings.spo2_scale)
        open_ = band.episode
        current = BAND_RANK[open_.rule if open_ else None]
        new = BAND_RANK[score.rule]
        if new == LOW_RANK and open_ is None and low_hold:
            low_since = low_since or at
            if at - low_since < low_hold:
                continue
        elif new <= current:
            low_since = None
        if new == current:
            band.break_hold()
            continue
        if new < current and band.held(at, step_down) is None:
            continue
        reason = "escalated" if new > current else "stepped_down"
        band.clear(at=at, evidence=_evidence(score, obs, used, reason, late))
        if score.rule is not None:
            evidence = _evidence(score, obs, used, reason, late)
            started = at
            if new == LOW_RANK and low_since is not None:
                started = low_since
                evidence["held_since"] = iso(low_since)
            band.raise_episode(score.rule, score.severity, at=at, episode_start=started, evidence=evidence)
        band.break_hold()
        low_since = None
    if latest == state.latest and last_ts == state.last_ts and not out:
        return state, out  # nothing new (a replay): the saved state stays as it is
    new_state = News2State(
        latest=latest,
        last_ts=last_ts,
        open=band.episode,
        lower_since=band.hold_since,
        low_since=low_since,
    )
    return new_state, out
