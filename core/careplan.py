"""Care plans: the per-patient settings every detector reads (ARCHITECTURE.md §4 and §6).

A care plan holds the clinical limits that raise alerts (not the catalogue's plausibility
limits, which only reject sensor garbage), the NEWS2 settings, the home-monitoring rules of
reference/clinical.md (blood-pressure crisis confirmation, heart-failure weight gain, glucose
levels), personal-baseline settings, measurement and medication schedules and device-silence
thresholds. It travels as JSON on the compacted topic `rpm.care-plans.v1` and is stored in
`care_plans.plan`; `default_care_plan()` is what applies to a patient without a plan.

Conventions used throughout:
- durations are whole seconds (`*_s`); times of day are local wall-clock times in the
  plan's IANA `timezone`, everything else is timezone-aware UTC;
- a limit raises strictly beyond its level (`value < raise_at` for a low limit,
  `value > raise_at` for a high one) and counts towards clearing at or inside its clear
  level (`value >= clear_at` / `value <= clear_at`), so "< 90 %" and ">= 92 %" read as written;
- numbers marked "clinical.md" come from /work/shared/reference/clinical.md and are the
  defaults; everything else is a documented engineering default that a plan may override.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from core.catalogue import CATALOGUE, DEVICE_CLASSES
from core.rules import Rule, Severity

CAREPLAN_SCHEMA: Final = 1

_MINUTE: Final = 60
_HOUR: Final = 3600
MAX_NOTE_CHARS: Final = 2000


def _require(condition: bool, message: str) -> None:
    # ValueError raised in __post_init__ becomes a msgspec.ValidationError when decoding.
    if not condition:
        raise ValueError(message)


def _require_metric(name: str) -> None:
    _require(name in CATALOGUE, f"unknown metric {name!r}")


class Limit(msgspec.Struct, frozen=True, kw_only=True):
    """One out-of-range rule with duration, repeat count and hysteresis.

    Raises when readings stay beyond `raise_at` for `sustained_s` with at least
    `repeat_count` readings beyond it; readings between the two levels (the dead band)
    neither start nor end an episode, a reading at or inside `clear_at` ends a pending one,
    and a gap of more than `max_gap_s` between readings beyond the level starts it again.
    An active episode clears only after readings stay at or inside `clear_at` for
    `clear_sustained_s` (with no gap longer than `max_gap_s`).
    """

    rule: Rule
    metric: str
    direction: Literal["low", "high"]
    raise_at: float
    clear_at: float
    sustained_s: int = 0
    repeat_count: int = 1
    clear_sustained_s: int = 0
    max_gap_s: int = 10 * _MINUTE
    severity: Severity = Severity.MEDIUM
    enabled: bool = True

    def __post_init__(self) -> None:
        _require_metric(self.metric)
        if self.direction == "low":
            _require(self.clear_at >= self.raise_at, "a low limit clears at or above its raise level")
        else:
            _require(self.clear_at <= self.raise_at, "a high limit clears at or below its raise level")
        _require(self.repeat_count >= 1, "repeat_count must be at least 1")
        _require(
            min(self.sustained_s, self.clear_sustained_s) >= 0 and self.max_gap_s > 0,
            "durations must be positive",
        )

    def beyond(self, value: float) -> bool:
        """True when the value is beyond the raise level."""
        return value < self.raise_at if self.direction == "low" else value > self.raise_at

    def recovered(self, value: float) -> bool:
        """True when the value is at or inside the clear level."""
        return value >= self.clear_at if self.direction == "low" else value <= self.clear_at


# Defaults: SpO2 from clinical.md (hysteresis); the others sit on NEWS2 band edges
# (clinical.md scoring table): raise where a parameter scores 3 (2 for temperature) and
# clear where it scores 0.
DEFAULT_LIMITS: Final[tuple[Limit, ...]] = (
    Limit(
        rule=Rule.SPO2_LOW,
        metric="spo2",
        direction="low",
        raise_at=90,
        clear_at=92,
        sustained_s=10 * _MINUTE,
        clear_sustained_s=10 * _MINUTE,
        severity=Severity.HIGH,
    ),
    Limit(
        rule=Rule.HEART_RATE_HIGH,
        metric="heart_rate",
        direction="high",
        raise_at=130,
        clear_at=90,
        sustained_s=5 * _MINUTE,
        clear_sustained_s=5 * _MINUTE,
    ),
    Limit(
        rule=Rule.HEART_RATE_LOW,
        metric="heart_rate",
        direction="low",
        raise_at=41,
        clear_at=51,
        sustained_s=5 * _MINUTE,
        clear_sustained_s=5 * _MINUTE,
    ),
    Limit(
        rule=Rule.RESP_RATE_HIGH,
        metric="resp_rate",
        direction="high",
        raise_at=24,
        clear_at=20,
        sustained_s=5 * _MINUTE,
        clear_sustained_s=5 * _MINUTE,
    ),
    # Temperature is mostly a spot measurement: one reading raises, one normal reading clears.
    Limit(rule=Rule.TEMP_HIGH, metric="body_temp", direction="high", raise_at=39.0, clear_at=38.0),
)


class News2Settings(msgspec.Struct, frozen=True, kw_only=True):
    """NEWS2 scoring settings (clinical.md: scale 2 only for a prescribed 88-92 % target)."""

    enabled: bool = True
    spo2_scale: Literal[1, 2] = 1
    # A parameter older than this (relative to the newest reading) is "not scored".
    max_age_s: int = _HOUR
    # A lower band must hold this long before the alert steps down (anti-flapping).
    step_down_s: int = 30 * _MINUTE
    # The low band (1-4) must hold this long before it raises; higher bands raise at once.
    low_sustained_s: int = 15 * _MINUTE


class BpCrisis(msgspec.Struct, frozen=True, kw_only=True):
    """Home BP >= 180/120: re-measure and alert only if the repeat is still high (clinical.md)."""

    enabled: bool = True
    systolic: float = 180
    diastolic: float = 120
    # A repeat counts when taken at least `min_gap_s` and at most `confirm_window_s` after the
    # first high reading (AHA: wait a few minutes and measure again).
    min_gap_s: int = _MINUTE
    confirm_window_s: int = 30 * _MINUTE
    confirmed_severity: Severity = Severity.CRITICAL


class HfWeightGain(msgspec.Struct, frozen=True, kw_only=True):
    """Heart-failure weight gain: >= 1.4 kg in 1 day or >= 2.3 kg in 7 days (clinical.md).

    `gain_3d_kg` adds an optional 3-day window, off by default: heart-failure self-care advice
    such as the ESC 2021 heart-failure guideline's "weight gain > 2 kg in 3 days" uses it, and a
    programme that follows that advice sets it in its plans.
    """

    enabled: bool = False
    gain_1d_kg: float = 1.4
    gain_7d_kg: float = 2.3
    gain_3d_kg: float | None = None
    # Yesterday's weigh-in may have been a little earlier in the day than today's.
    slack_s: int = 3 * _HOUR
    severity: Severity = Severity.HIGH

    def __post_init__(self) -> None:
        gains = (self.gain_1d_kg, self.gain_7d_kg, self.gain_3d_kg)
        _require(all(g is None or g > 0 for g in gains), "weight-gain limits must be positive")
        _require(self.slack_s >= 0, "slack_s must not be negative")


class GlucoseLimits(msgspec.Struct, frozen=True, kw_only=True):
    """ADA glucose levels in mg/dL (clinical.md): level 1 < 70, level 2 < 54, high > 250."""

    enabled: bool = True
    level1_below: float = 70
    level2_below: float = 54
    high_above: float | None = 250
    # An episode ends after readings stay in range this long (CGM consensus practice;
    # a spot glucometer's next in-range reading usually satisfies it).
    clear_sustained_s: int = 15 * _MINUTE
    level1_severity: Severity = Severity.MEDIUM
    level2_severity: Severity = Severity.HIGH
    high_severity: Severity = Severity.MEDIUM

    def __post_init__(self) -> None:
        _require(self.level2_below <= self.level1_below, "level 2 lies below level 1")


class BaselineSetting(msgspec.Struct, frozen=True, kw_only=True):
    """Personal baseline for one metric, over time buckets rather than single readings.

    Readings are averaged per `bucket_s` bucket (aligned to the epoch); the baseline is the
    median of the last `window` bucket means and its spread their median absolute deviation
    (MAD). When a bucket ends, its mean deviates when its modified z-score
    0.6745 * |mean - median| / max(MAD, min_mad) exceeds `z_threshold` (Iglewicz and Hoaglin's
    3.5); `repeat_count` consecutive deviating buckets raise, `clear_count` consecutive
    ordinary ones clear. Nothing is judged before `min_samples` bucket means are known.
    A wearable's 30-minute means over 24 hours make a baseline of the patient's day, circadian
    rhythm included; for a spot device a bucket is usually one measurement.
    """

    metric: str
    bucket_s: int = 30 * _MINUTE
    window: int = 48
    min_samples: int = 12
    z_threshold: float = 3.5
    min_mad: float = 1.0
    repeat_count: int = 2
    clear_count: int = 2
    enabled: bool = True

    def __post_init__(self) -> None:
        _require_metric(self.metric)
        _require(60 <= self.bucket_s <= 24 * _HOUR, "bucket_s must be 1 min to 24 h")
        _require(1 <= self.min_samples <= self.window <= 1000, "need 1 <= min_samples <= window <= 1000")
        _require(self.min_mad > 0 and self.z_threshold > 0, "min_mad and z_threshold must be > 0")
        _require(self.repeat_count >= 1 and self.clear_count >= 1, "counts must be at least 1")


DEFAULT_BASELINES: Final[tuple[BaselineSetting, ...]] = (
    BaselineSetting(metric="heart_rate", min_mad=3.0),
    BaselineSetting(metric="resp_rate", min_mad=1.0),
    BaselineSetting(metric="spo2", min_mad=1.0),
    BaselineSetting(metric="body_temp", min_mad=0.2),
    BaselineSetting(metric="bp_systolic", min_mad=5.0, min_samples=14, window=60),
    BaselineSetting(metric="bp_diastolic", min_mad=4.0, min_samples=14, window=60),
)


def _check_times(times: tuple[time, ...]) -> None:
    _require(all(t.tzinfo is None for t in times), "times of day are local times without an offset")
    _require(len(set(times)) == len(times), "times of day must be distinct")


class MeasurementSchedule(msgspec.Struct, frozen=True, kw_only=True):
    """Expected measurements of one metric: at given times of day (each +/- `tolerance_s`),
    or a number of readings per local calendar day."""

    metric: str
    times_of_day: tuple[time, ...] = ()
    times_per_day: int | None = None
    tolerance_s: int = _HOUR
    severity: Severity = Severity.LOW

    def __post_init__(self) -> None:
        _require_metric(self.metric)
        _require(
            bool(self.times_of_day) != (self.times_per_day is not None),
            "give either times_of_day or times_per_day",
        )
        _require(self.times_per_day is None or 1 <= self.times_per_day <= 48, "times_per_day 1-48")
        _require(0 <= self.tolerance_s <= 12 * _HOUR, "tolerance_s 0-12 h")
        _check_times(self.times_of_day)


class MedicationSchedule(msgspec.Struct, frozen=True, kw_only=True):
    """A dose to take at given local times of day, each within +/- `window_s`."""

    dose_id: str
    times_of_day: tuple[time, ...]
    window_s: int = _HOUR
    severity: Severity = Severity.MEDIUM

    def __post_init__(self) -> None:
        _require(bool(self.dose_id) and bool(self.times_of_day), "dose_id and times_of_day needed")
        _require(0 <= self.window_s <= 12 * _HOUR, "window_s 0-12 h")
        _check_times(self.times_of_day)


class SilencePolicy(msgspec.Struct, frozen=True, kw_only=True):
    """When a device counts as silent.

    `continuous`: warn after `warn_s`, urgent after `urgent_s` without data (clinical.md:
    15 / 30 min for a continuous wearable). `schedule`: derived from the care-plan schedules of
    the metrics the device sends (one expected reading missed -> warn, two -> urgent).
    `off`: never.
    """

    mode: Literal["continuous", "schedule", "off"]
    warn_s: int = 15 * _MINUTE
    urgent_s: int = 30 * _MINUTE

    def __post_init__(self) -> None:
        _require(0 < self.warn_s <= self.urgent_s, "need 0 < warn_s <= urgent_s")


def _default_silence() -> dict[str, SilencePolicy]:
    policies: dict[str, SilencePolicy] = {name: SilencePolicy(mode="schedule") for name in DEVICE_CLASSES}
    policies["wearable"] = SilencePolicy(mode="continuous", warn_s=15 * _MINUTE, urgent_s=30 * _MINUTE)
    return policies


class CarePlan(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the detectors need to know about one patient.

    `version` is the plan's revision (0 for the default plan of a patient without one);
    `schema` is the version of this JSON shape.
    """

    patient_id: str
    version: int = 0
    schema: int = CAREPLAN_SCHEMA
    timezone: str = "UTC"
    # When this version took effect: adherence is not judged for earlier schedule windows.
    effective_from: datetime | None = None
    on_oxygen: bool = False
    news2: News2Settings = News2Settings()
    limits: tuple[Limit, ...] = DEFAULT_LIMITS
    bp_crisis: BpCrisis = BpCrisis()
    hf_weight: HfWeightGain = HfWeightGain()
    glucose: GlucoseLimits = GlucoseLimits()
    baselines: tuple[BaselineSetting, ...] = DEFAULT_BASELINES
    measurements: tuple[MeasurementSchedule, ...] = ()
    medications: tuple[MedicationSchedule, ...] = ()
    silence: dict[str, SilencePolicy] = msgspec.field(default_factory=_default_silence)
    # Wait this long after a schedule window closes before calling it missed: readings a
    # device stored while offline may still be on their way.
    adherence_grace_s: int = 5 * _MINUTE
    # The care team's words to the patient on why the limits are what they are (shown on the
    # patient's "My care plan" page, ADR 0027); plain text, no markup.
    note: str = ""

    def __post_init__(self) -> None:
        _require(self.schema == CAREPLAN_SCHEMA, f"unsupported care plan schema {self.schema}")
        _require(len(self.note) <= MAX_NOTE_CHARS, f"note is at most {MAX_NOTE_CHARS} characters")
        _require(bool(self.patient_id), "patient_id is required")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.timezone!r}") from exc
        _require(
            self.effective_from is None or self.effective_from.tzinfo is not None,
            "effective_from must be timezone-aware",
        )
        rules = [limit.rule for limit in self.limits]
        _require(len(set(rules)) == len(rules), "one limit per rule")
        metrics = [b.metric for b in self.baselines]
        _require(len(set(metrics)) == len(metrics), "one baseline per metric")
        doses = [m.dose_id for m in self.medications]
        _require(len(set(doses)) == len(doses), "one medication schedule per dose_id")
        _require(set(self.silence) <= set(DEVICE_CLASSES), "unknown device class in silence")
        _require(self.adherence_grace_s >= 0, "adherence_grace_s must be >= 0")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def silence_policy(self, device_class: str) -> SilencePolicy:
        """The policy of a device class; a class the plan does not mention follows the schedule."""
        return self.silence.get(device_class, SilencePolicy(mode="schedule"))


def default_care_plan(patient_id: str) -> CarePlan:
    """The plan of a patient without one: clinical.md defaults, NEWS2 scale 1, on air, BP
    crisis and glucose rules on, heart-failure weight rules off (they need a diagnosis), no
    measurement or medication schedules (nothing was prescribed, so nothing can be missed)."""
    return CarePlan(patient_id=patient_id)


care_plan_decoder: Final = msgspec.json.Decoder(CarePlan)


def encode_care_plan(plan: CarePlan) -> bytes:
    """JSON bytes of a plan, as written to `rpm.care-plans.v1` and `care_plans.plan`."""
    return msgspec.json.encode(plan)


def decode_care_plan(data: bytes | str) -> CarePlan:
    """Parse and validate a plan; raises msgspec.ValidationError with the offending path."""
    return care_plan_decoder.decode(data)
