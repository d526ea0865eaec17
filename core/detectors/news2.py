"""NEWS2 scoring (Royal College of Physicians, 2017), exactly as in reference/clinical.md.

Rounding rule for real values that fall between the table's integer bands: a value is first
rounded, half up, to the resolution the table uses for it (respiration rate, SpO2, systolic
BP and pulse to whole numbers; temperature to 0.1 °C), using its shortest decimal text so that
36.05 means 36.05 and not the binary float just below it. So RR 11.5 scores as 12 (0),
temperature 36.05 as 36.1 (0) and 36.04 as 36.0 (1).

Missing parameters are listed and not scored; the total of an incomplete set is a lower
bound of the full score, and the band derived from it says so (`complete=False`). With scale 2
and SpO2 >= 93 %, the SpO2 score depends on oxygen: if that is unknown it is scored as on air
(the lower bound) and "air_or_oxygen" is listed as missing.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Final, Literal

import msgspec

from core.catalogue import AcvpuLevel
from core.rules import Rule, Severity

Consciousness = AcvpuLevel  # ACVPU; C = new confusion (stored as core.catalogue.ACVPU_CODES)
Scale = Literal[1, 2]

PARAMETERS: Final = (
    "resp_rate",
    "spo2",
    "air_or_oxygen",
    "bp_systolic",
    "heart_rate",
    "consciousness",
    "body_temp",
)

_ONE: Final = Decimal(1)
_TENTH: Final = Decimal("0.1")


class Risk(StrEnum):
    """Clinical risk of a NEWS2 result (clinical.md, clinical response table)."""

    LOW = "low"
    LOW_MEDIUM = "low-medium"
    MEDIUM = "medium"
    HIGH = "high"


class News2Input(msgspec.Struct, frozen=True, kw_only=True):
    """One set of observations; None means "not measured"."""

    resp_rate: float | None = None
    spo2: float | None = None
    on_oxygen: bool | None = None
    bp_systolic: float | None = None
    heart_rate: float | None = None
    consciousness: Consciousness | None = None
    body_temp: float | None = None


class News2Score(msgspec.Struct, frozen=True, kw_only=True):
    """A NEWS2 result: total, per-parameter scores, what was not scored, and its band."""

    total: int
    scores: dict[str, int]
    missing: tuple[str, ...]
    scale: Scale
    risk: Risk
    rule: Rule | None  # None for an aggregate of 0
    severity: Severity
    max_single: int

    @property
    def complete(self) -> bool:
        return not self.missing


def round_half_up(value: float, resolution: Decimal = _ONE) -> Decimal:
    """Round to `resolution` (1 or 0.1), halves away from zero, on the value's decimal text."""
    if not math.isfinite(value):
        raise ValueError(f"cannot score a non-finite value {value!r}")
    if float(value).is_integer() and abs(value) < 2**53:
        return Decimal(int(value))  # the usual case (whole beats, breaths, percent): nothing to round
    return Decimal(repr(float(value))).quantize(resolution, rounding=ROUND_HALF_UP)


def _whole(value: float) -> int:
    return int(round_half_up(value))


def score_resp_rate(value: float) -> int:
    rr = _whole(value)
    if rr <= 8:
        return 3
    if rr <= 11:
        return 1
    if rr <= 20:
        return 0
    if rr <= 24:
        return 2
    return 3


def score_spo2(value: float, *, scale: Scale = 1, on_oxygen: bool = False) -> int:
    s = _whole(value)
    if scale == 1:
        if s <= 91:
            return 3
        if s <= 93:
            return 2
        if s <= 95:
            return 1
        return 0
    if s <= 83:
        return 3
    if s <= 85:
        return 2
    if s <= 87:
        return 1
    if s <= 92 or not on_oxygen:
        return 0
    if s <= 94:
        return 1
    if s <= 96:
        return 2
    return 3


def score_air_or_oxygen(on_oxygen: bool) -> int:
    return 2 if on_oxygen else 0


def score_bp_systolic(value: float) -> int:
    sbp = _whole(value)
    if sbp <= 90:
        return 3
    if sbp <= 100:
        return 2
    if sbp <= 110:
        return 1
    if sbp <= 219:
        return 0
    return 3


def score_heart_rate(value: float) -> int:
    hr = _whole(value)
    if hr <= 40:
        return 3
    if hr <= 50:
        return 1
    if hr <= 90:
        return 0
    if hr <= 110:
        return 1
    if hr <= 130:
        return 2
    return 3


def score_consciousness(level: Consciousness) -> int:
    return 0 if level == "A" else 3


def score_body_temp(value: float) -> int:
    tenths = int(round_half_up(value, _TENTH) * 10)
    if tenths <= 350:
        return 3
    if tenths <= 360:
        return 1
    if tenths <= 380:
        return 0
    if tenths <= 390:
        return 1
    return 2


def band(total: int, max_single: int) -> tuple[Risk, Rule | None, Severity]:
    """Clinical response band (clinical.md): 0 low; 1-4 low; a 3 in any single parameter
    low-medium; 5-6 medium; >= 7 high. An aggregate of 5 or more outranks a single 3."""
    if total >= 7:
        return Risk.HIGH, Rule.NEWS2_HIGH, Severity.CRITICAL
    if total >= 5:
        return Risk.MEDIUM, Rule.NEWS2_MEDIUM, Severity.HIGH
    if max_single >= 3:
        return Risk.LOW_MEDIUM, Rule.NEWS2_SINGLE_PARAMETER, Severity.MEDIUM
    if total >= 1:
        return Risk.LOW, Rule.NEWS2_LOW, Severity.LOW
    return Risk.LOW, None, Severity.INFO


# Ordering of the band rules, lowest first (for escalation and step-down).
BAND_RANK: Final[dict[Rule | None, int]] = {
    None: 0,
    Rule.NEWS2_LOW: 1,
    Rule.NEWS2_SINGLE_PARAMETER: 2,
    Rule.NEWS2_MEDIUM: 3,
    Rule.NEWS2_HIGH: 4,
}


def score_news2(obs: News2Input, *, scale: Scale = 1) -> News2Score:
    """Score one set of observations on the given SpO2 scale (1 unless the care plan says 2)."""
    scores: dict[str, int] = {}
    if obs.resp_rate is not None:
        scores["resp_rate"] = score_resp_rate(obs.resp_rate)
    if obs.spo2 is not None:
        scores["spo2"] = score_spo2(obs.spo2, scale=scale, on_oxygen=bool(obs.on_oxygen))
    if obs.on_oxygen is not None:
        scores["air_or_oxygen"] = score_air_or_oxygen(obs.on_oxygen)
    if obs.bp_systolic is not None:
        scores["bp_systolic"] = score_bp_systolic(obs.bp_systolic)
    if obs.heart_rate is not None:
        scores["heart_rate"] = score_heart_rate(obs.heart_rate)
    if obs.consciousness is not None:
        scores["consciousness"] = score_consciousness(obs.consciousness)
    if obs.body_temp is not None:
        scores["body_temp"] = score_body_temp(obs.body_temp)
    missing = tuple(p for p in PARAMETERS if p not in scores)
    total = sum(scores.values())
    max_single = max(scores.values(), default=0)
    risk, rule, severity = band(total, max_single)
    return News2Score(
        total=total,
        scores=scores,
        missing=missing,
        scale=scale,
        risk=risk,
        rule=rule,
        severity=severity,
        max_single=max_single,
    )
