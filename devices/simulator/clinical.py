"""The clinical arithmetic the simulator needs to state its ground truth: NEWS2 sub-scores
(Royal College of Physicians 2017, see shared/reference/clinical.md) for the parameters a
device measures, and the home-monitoring limits its scenarios aim at.

This is the simulator's own code, used only to predict what a correct platform raises; the
platform's detectors (core/detectors) are checked against this ground truth, so none of them is
imported here. The limits are the care plan's: the defaults of `core.careplan` (a patient
without a plan), or the patient's plan where a caller has one (`News2Monitor.for_plan`,
`GlucoseEpisodes(plan.glucose)`). The NEWS2 scoring table itself is clinical.md's, written out
below as band edges; values are rounded half up to the table's resolution (integers;
temperature to 0.1 °C), from their shortest decimal text.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from core.careplan import CarePlan, GlucoseLimits, default_care_plan
from core.rules import Rule

# What applies to a patient without a care plan (core/careplan.py's defaults).
DEFAULT_PLAN: Final = default_care_plan("simulated-patient")
_SPO2_LIMIT: Final = next(limit for limit in DEFAULT_PLAN.limits if limit.rule is Rule.SPO2_LOW)
_WEARABLE_SILENCE: Final = DEFAULT_PLAN.silence_policy("wearable")

BP_CRISIS_SYSTOLIC: Final = float(DEFAULT_PLAN.bp_crisis.systolic)
BP_CRISIS_DIASTOLIC: Final = float(DEFAULT_PLAN.bp_crisis.diastolic)
GLUCOSE_LOW_L1: Final = float(DEFAULT_PLAN.glucose.level1_below)
GLUCOSE_LOW_L2: Final = float(DEFAULT_PLAN.glucose.level2_below)
HF_GAIN_1D_KG: Final = float(DEFAULT_PLAN.hf_weight.gain_1d_kg)
HF_GAIN_7D_KG: Final = float(DEFAULT_PLAN.hf_weight.gain_7d_kg)
SPO2_LOW: Final = float(_SPO2_LIMIT.raise_at)
SPO2_LOW_SUSTAIN_S: Final = float(_SPO2_LIMIT.sustained_s)
SILENT_WARN_S: Final = float(_WEARABLE_SILENCE.warn_s)
SILENT_URGENT_S: Final = float(_WEARABLE_SILENCE.urgent_s)
# Not a care-plan limit: how far in the future ingest accepts a reading's time.
FUTURE_TOLERANCE_S: Final = 5 * 60.0

# NEWS2 scoring table (clinical.md): per parameter, (highest value of a band, its score) from the
# lowest band up, and the score of anything above the last band.
Bands = tuple[tuple[tuple[float, int], ...], int]
RESP_RATE_BANDS: Final[Bands] = (((8, 3), (11, 1), (20, 0), (24, 2)), 3)
SPO2_SCALE1_BANDS: Final[Bands] = (((91, 3), (93, 2), (95, 1)), 0)
# Scale 2 (a prescribed 88-92 % target): above 92 % scores only on oxygen.
SPO2_SCALE2_AIR_BANDS: Final[Bands] = (((83, 3), (85, 2), (87, 1)), 0)
SPO2_SCALE2_OXYGEN_BANDS: Final[Bands] = (((83, 3), (85, 2), (87, 1), (92, 0), (94, 1), (96, 2)), 3)
SYSTOLIC_BANDS: Final[Bands] = (((90, 3), (100, 2), (110, 1), (219, 0)), 3)
PULSE_BANDS: Final[Bands] = (((40, 3), (50, 1), (90, 0), (110, 1), (130, 2)), 3)
TEMPERATURE_BANDS: Final[Bands] = (((35.0, 3), (36.0, 1), (38.0, 0), (39.0, 1)), 2)
ON_OXYGEN_SCORE: Final = 2


def _half_up(value: float, places: int = 0) -> float:
    if places == 0 and float(value).is_integer():
        return float(value)  # most device values are whole numbers already (fast path)
    return float(Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def _score(value: float, bands: Bands) -> int:
    edges, above = bands
    return next((score for highest, score in edges if value <= highest), above)


def score_resp_rate(rr: float) -> int:
    return _score(_half_up(rr), RESP_RATE_BANDS)


def score_spo2(spo2: float, *, scale: int = 1, on_oxygen: bool = False) -> int:
    if scale == 1:
        return _score(_half_up(spo2), SPO2_SCALE1_BANDS)
    return _score(_half_up(spo2), SPO2_SCALE2_OXYGEN_BANDS if on_oxygen else SPO2_SCALE2_AIR_BANDS)


def score_systolic(sbp: float) -> int:
    return _score(_half_up(sbp), SYSTOLIC_BANDS)


def score_pulse(hr: float) -> int:
    return _score(_half_up(hr), PULSE_BANDS)


def score_temperature(temp: float) -> int:
    return _score(_half_up(temp, 1), TEMPERATURE_BANDS)


def news2(
    *,
    resp_rate: float,
    spo2: float,
    pulse: float,
    temperature: float,
    systolic: float | None = None,
    on_oxygen: bool = False,
    scale: int = 1,
) -> int:
    """Aggregate NEWS2 of the parameters given (consciousness assumed alert; systolic BP
    counted only when measured)."""
    total = (
        score_resp_rate(resp_rate)
        + score_spo2(spo2, scale=scale, on_oxygen=on_oxygen)
        + score_pulse(pulse)
        + score_temperature(temperature)
        + (ON_OXYGEN_SCORE if on_oxygen else 0)
    )
    if systolic is not None:
        total += score_systolic(systolic)
    return total


GLUCOSE_HIGH: Final = math.inf if DEFAULT_PLAN.glucose.high_above is None else float(DEFAULT_PLAN.glucose.high_above)
GLUCOSE_CLEAR_SUSTAIN_S: Final = float(DEFAULT_PLAN.glucose.clear_sustained_s)


class GlucoseEpisodes:
    """Which glucose detections a patient's readings imply (ADA levels, clinical.md; the
    care plan's episode rule and limits, the defaults unless given): a hypoglycaemia episode
    raises once per level reached (level 1, then level 2 if it goes that low), hyperglycaemia
    (> 250 mg/dL by default) is a separate episode, and an episode ends only when readings have
    stayed in range for the plan's hold (15 minutes), i.e. at the second in-range reading at
    least that long after the first."""

    def __init__(self, limits: GlucoseLimits = DEFAULT_PLAN.glucose) -> None:
        self.level1_below, self.level2_below = limits.level1_below, limits.level2_below
        self.high_above = math.inf if limits.high_above is None else limits.high_above
        self.clear_sustained_s = float(limits.clear_sustained_s)
        self.hypo: set[str] = set()
        self.hypo_since: float | None = None
        self.hyper = False
        self.hyper_since: float | None = None

    def observe(self, ts: float, mg_dl: float) -> list[str]:
        """Feed one reading (in time order); returns the rules it raises."""
        raised: list[str] = []
        level = (
            "glucose_low_l2"
            if mg_dl < self.level2_below
            else "glucose_low_l1"
            if mg_dl < self.level1_below
            else "glucose_high"
            if mg_dl > self.high_above
            else None
        )
        if level in ("glucose_low_l1", "glucose_low_l2"):
            self.hypo_since = None
            if not self.hypo or (level == "glucose_low_l2" and level not in self.hypo):
                raised.append(level)
                self.hypo.add(level)
        elif self.hypo:
            self.hypo_since = ts if self.hypo_since is None else self.hypo_since
            if ts - self.hypo_since >= self.clear_sustained_s:
                self.hypo, self.hypo_since = set(), None
        if level == "glucose_high":
            self.hyper_since = None
            if not self.hyper:
                raised.append(level)
                self.hyper = True
        elif self.hyper:
            self.hyper_since = ts if self.hyper_since is None else self.hyper_since
            if ts - self.hyper_since >= self.clear_sustained_s:
                self.hyper, self.hyper_since = False, None
        return raised


def weight_gain_raises(
    times: list[float], kgs: list[float], windows: list[tuple[str, float, float]], slack_s: float
) -> dict[str, float]:
    """First time each weight-gain rule raises over a patient's weighings (in time order).

    `windows` are (rule, span seconds, limit kg); a weighing raises a rule when its gain over
    the lowest weight of the preceding span (plus `slack_s`, so yesterday's weigh-in at a
    slightly earlier hour counts) reaches the limit (gains rounded to 1 g); clinical.md with
    the care plan's limits.
    """
    first: dict[str, float] = {}
    for j, (t, kg) in enumerate(zip(times, kgs, strict=True)):
        for rule, span, limit in windows:
            if rule in first:
                continue
            earlier = [kgs[i] for i in range(j) if times[i] >= t - span - slack_s]
            if earlier and round(kg - min(earlier), 3) + 1e-9 >= limit:
                first[rule] = t
    return first


NEWS2_BANDS: Final = (None, "news2_low", "news2_single_parameter", "news2_medium", "news2_high")
NEWS2_MAX_AGE_S: Final = float(DEFAULT_PLAN.news2.max_age_s)
NEWS2_STEP_DOWN_S: Final = float(DEFAULT_PLAN.news2.step_down_s)
NEWS2_LOW_HOLD_S: Final = float(DEFAULT_PLAN.news2.low_sustained_s)
_SCORERS: Final = {
    "resp_rate": score_resp_rate,
    "heart_rate": score_pulse,
    "body_temp": score_temperature,
    "bp_systolic": score_systolic,
}


def news2_band(total: int, max_single: int) -> str | None:
    """clinical.md response bands: >= 7 high, 5-6 medium, a 3 in one parameter, 1-4 low."""
    if total >= 7:
        return "news2_high"
    if total >= 5:
        return "news2_medium"
    if max_single >= 3:
        return "news2_single_parameter"
    return "news2_low" if total >= 1 else None


class News2Monitor:
    """The NEWS2 alerts a patient's readings imply, as the care plan's NEWS2 settings define
    them (`for_plan`; the defaults' figures below): the latest value of each parameter by its
    own time (not older than 1 h), whatever the arrival order, is scored at every reading time,
    on the plan's SpO2 scale and oxygen (consciousness is not measured, so not scored); a higher
    band raises at once, except the low band, which must first hold for 15 minutes (with no band
    raised); a lower one replaces a raised band only after it held for 30 minutes."""

    def __init__(
        self,
        *,
        scale: int,
        on_oxygen: bool,
        max_age_s: float = NEWS2_MAX_AGE_S,
        step_down_s: float = NEWS2_STEP_DOWN_S,
        low_hold_s: float = NEWS2_LOW_HOLD_S,
    ) -> None:
        self.scale, self.on_oxygen = scale, on_oxygen
        self.max_age_s, self.step_down_s, self.low_hold_s = max_age_s, step_down_s, low_hold_s
        self.latest: dict[str, tuple[float, float]] = {}  # parameter -> (value, time)
        self.band: str | None = None
        self.lower_since: float | None = None
        self.low_since: float | None = None  # the low band pending since (no band raised)
        self.last_ts: float | None = None

    @classmethod
    def for_plan(cls, plan: CarePlan) -> News2Monitor:
        """The monitor of a patient with this care plan (its NEWS2 settings and oxygen)."""
        news2 = plan.news2
        return cls(
            scale=news2.spo2_scale,
            on_oxygen=plan.on_oxygen,
            max_age_s=news2.max_age_s,
            step_down_s=news2.step_down_s,
            low_hold_s=news2.low_sustained_s,
        )

    def score(self, at: float) -> tuple[int, int]:
        scores = [ON_OXYGEN_SCORE if self.on_oxygen else 0]
        for name, (value, ts) in self.latest.items():
            if at - ts > self.max_age_s:
                continue
            if name == "spo2":
                scores.append(score_spo2(value, scale=self.scale, on_oxygen=self.on_oxygen))
            else:
                scores.append(_SCORERS[name](value))
        return sum(scores), max(scores)

    def observe(self, at: float, values: dict[str, float]) -> str | None:
        """Readings taken at `at`, in the order the platform receives them; returns the band
        rule raised, if any. As the platform does (ADR 0015): a value replaces the kept one of
        its parameter only when taken later; readings taken at or before the newest time
        already scored ("late", e.g. a cuff flushing after newer wearable readings) are folded
        in and, if one of them counts there, the set is scored again at that newest time."""
        changed = False
        for name, value in values.items():
            if name in _SCORERS or name == "spo2":
                kept = self.latest.get(name)
                if kept is None or at > kept[1]:
                    self.latest[name] = (value, at)
                    changed = True
        if self.last_ts is not None and at <= self.last_ts:
            if not changed or self.last_ts - at > self.max_age_s:
                return None
            at = self.last_ts  # a late reading: score again at the newest time scored
        self.last_ts = at
        new = news2_band(*self.score(at))
        rank, current = NEWS2_BANDS.index(new), NEWS2_BANDS.index(self.band)
        if new == "news2_low" and self.band is None and self.low_hold_s > 0:
            self.low_since = at if self.low_since is None else self.low_since
            if at - self.low_since < self.low_hold_s:
                return None
        elif rank <= current:
            self.low_since = None
        if rank == current:
            self.lower_since = None
            return None
        if rank < current:
            self.lower_since = at if self.lower_since is None else self.lower_since
            if at - self.lower_since < self.step_down_s:
                return None
        self.band, self.lower_since, self.low_since = new, None, None
        return new


class LowLimitEpisode:
    """When a home-monitoring low limit (e.g. SpO2 < 90 % for 10 min) raises over one metric's
    readings, in time order (clinical.md, "Hysteresis"): the episode starts at the first value
    below `raise_at`, values between `raise_at` and `clear_at` neither count nor end it, a value
    at or above `clear_at` ends it, and so does no value below `raise_at` for `max_gap_s`; it
    raises at the first value below `raise_at` at least `sustained_s` after the start with
    `repeat` values below counted. Raises once."""

    def __init__(
        self, *, raise_at: float, clear_at: float, sustained_s: float, repeat: int = 1, max_gap_s: float = 600.0
    ) -> None:
        self.raise_at, self.clear_at = raise_at, clear_at
        self.sustained_s, self.repeat, self.max_gap_s = sustained_s, repeat, max_gap_s
        self.start: float | None = None
        self.last_below: float | None = None
        self.count = 0
        self.raised = False

    def observe(self, at: float, value: float) -> bool:
        """True when this value raises the limit."""
        if self.raised:
            return False
        if self.last_below is not None and at - self.last_below > self.max_gap_s:
            self.start, self.last_below, self.count = None, None, 0
        if value < self.raise_at:
            self.start = at if self.start is None else self.start
            self.last_below = at
            self.count += 1
            self.raised = at - self.start >= self.sustained_s and self.count >= self.repeat
            return self.raised
        if value >= self.clear_at:
            self.start, self.last_below, self.count = None, None, 0
        return False
