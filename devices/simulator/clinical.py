"""The clinical arithmetic the simulator needs to state its ground truth: NEWS2 sub-scores
(Royal College of Physicians 2017, see shared/reference/clinical.md) for the parameters a
device measures, and the home-monitoring limits its scenarios aim at.

This is the simulator's own copy, used only to predict what a correct platform raises;
the platform's detectors live in streams/ and are checked against this ground truth.
Values are rounded half up to the band table's resolution (integers; temperature to 0.1 °C),
from their shortest decimal text.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Final

BP_CRISIS_SYSTOLIC: Final = 180.0
BP_CRISIS_DIASTOLIC: Final = 120.0
GLUCOSE_LOW_L1: Final = 70.0
GLUCOSE_LOW_L2: Final = 54.0
HF_GAIN_1D_KG: Final = 1.4
HF_GAIN_7D_KG: Final = 2.3
SPO2_LOW: Final = 90.0
SPO2_LOW_SUSTAIN_S: Final = 600.0
SILENT_WARN_S: Final = 15 * 60.0
SILENT_URGENT_S: Final = 30 * 60.0
FUTURE_TOLERANCE_S: Final = 5 * 60.0


def _half_up(value: float, places: int = 0) -> float:
    if places == 0 and float(value).is_integer():
        return float(value)  # most device values are whole numbers already (fast path)
    return float(Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def score_resp_rate(rr: float) -> int:
    rr = _half_up(rr)
    if rr <= 8:
        return 3
    if rr <= 11:
        return 1
    if rr <= 20:
        return 0
    if rr <= 24:
        return 2
    return 3


def score_spo2(spo2: float, *, scale: int = 1, on_oxygen: bool = False) -> int:
    s = _half_up(spo2)
    if scale == 1:
        return 3 if s <= 91 else 2 if s <= 93 else 1 if s <= 95 else 0
    if s <= 83:
        return 3
    if s <= 85:
        return 2
    if s <= 87:
        return 1
    if s <= 92 or not on_oxygen:
        return 0
    return 1 if s <= 94 else 2 if s <= 96 else 3


def score_systolic(sbp: float) -> int:
    s = _half_up(sbp)
    if s <= 90:
        return 3
    if s <= 100:
        return 2
    if s <= 110:
        return 1
    return 0 if s <= 219 else 3


def score_pulse(hr: float) -> int:
    h = _half_up(hr)
    if h <= 40:
        return 3
    if h <= 50:
        return 1
    if h <= 90:
        return 0
    if h <= 110:
        return 1
    return 2 if h <= 130 else 3


def score_temperature(temp: float) -> int:
    t = _half_up(temp, 1)
    if t <= 35.0:
        return 3
    if t <= 36.0:
        return 1
    if t <= 38.0:
        return 0
    return 1 if t <= 39.0 else 2


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
        + (2 if on_oxygen else 0)
    )
    if systolic is not None:
        total += score_systolic(systolic)
    return total


GLUCOSE_HIGH: Final = 250.0
GLUCOSE_CLEAR_SUSTAIN_S: Final = 15 * 60.0


class GlucoseEpisodes:
    """Which glucose detections a patient's readings imply (ADA levels, clinical.md; the
    care plan's episode rule): a hypoglycaemia episode raises once per level reached (level 1,
    then level 2 if it goes that low), hyperglycaemia (> 250 mg/dL) is a separate episode, and
    an episode ends only when readings have stayed in range for 15 minutes, i.e. at the second
    in-range reading at least 15 minutes after the first."""

    def __init__(self) -> None:
        self.hypo: set[str] = set()
        self.hypo_since: float | None = None
        self.hyper = False
        self.hyper_since: float | None = None

    def observe(self, ts: float, mg_dl: float) -> list[str]:
        """Feed one reading (in time order); returns the rules it raises."""
        raised: list[str] = []
        level = ("glucose_low_l2" if mg_dl < GLUCOSE_LOW_L2 else "glucose_low_l1" if mg_dl < GLUCOSE_LOW_L1
                 else "glucose_high" if mg_dl > GLUCOSE_HIGH else None)
        if level in ("glucose_low_l1", "glucose_low_l2"):
            self.hypo_since = None
            if not self.hypo or (level == "glucose_low_l2" and level not in self.hypo):
                raised.append(level)
                self.hypo.add(level)
        elif self.hypo:
            self.hypo_since = ts if self.hypo_since is None else self.hypo_since
            if ts - self.hypo_since >= GLUCOSE_CLEAR_SUSTAIN_S:
                self.hypo, self.hypo_since = set(), None
        if level == "glucose_high":
            self.hyper_since = None
            if not self.hyper:
                raised.append(level)
                self.hyper = True
        elif self.hyper:
            self.hyper_since = ts if self.hyper_since is None else self.hyper_since
            if ts - self.hyper_since >= GLUCOSE_CLEAR_SUSTAIN_S:
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
NEWS2_MAX_AGE_S: Final = 3600.0
NEWS2_STEP_DOWN_S: Final = 1800.0
NEWS2_LOW_HOLD_S: Final = 900.0
_SCORERS: Final = {"resp_rate": score_resp_rate, "heart_rate": score_pulse, "body_temp": score_temperature,
                   "bp_systolic": score_systolic}


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
    them: the latest value of each parameter by its own time (not older than 1 h), whatever
    the arrival order, is scored at every reading time, on the plan's SpO2 scale and oxygen
    (consciousness is not measured, so not scored); a higher band raises at once, except the
    low band, which must first hold for 15 minutes (with no band raised); a lower one replaces
    a raised band only after it held for 30 minutes."""

    def __init__(self, *, scale: int, on_oxygen: bool, max_age_s: float = NEWS2_MAX_AGE_S,
                 step_down_s: float = NEWS2_STEP_DOWN_S, low_hold_s: float = NEWS2_LOW_HOLD_S) -> None:
        self.scale, self.on_oxygen = scale, on_oxygen
        self.max_age_s, self.step_down_s, self.low_hold_s = max_age_s, step_down_s, low_hold_s
        self.latest: dict[str, tuple[float, float]] = {}  # parameter -> (value, time)
        self.band: str | None = None
        self.lower_since: float | None = None
        self.low_since: float | None = None  # the low band pending since (no band raised)
        self.last_ts: float | None = None

    def score(self, at: float) -> tuple[int, int]:
        scores = [2 if self.on_oxygen else 0]
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

    def __init__(self, *, raise_at: float, clear_at: float, sustained_s: float, repeat: int = 1,
                 max_gap_s: float = 600.0) -> None:
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
