"""The clinical arithmetic the simulator needs to state its ground truth: NEWS2 sub-scores
(Royal College of Physicians 2017, see shared/reference/clinical.md) for the parameters a
device measures, and the home-monitoring limits its scenarios aim at.

This is the simulator's own copy, used only to predict what a correct platform raises;
the platform's detectors live in streams/ and are checked against this ground truth.
Values are rounded to the band table's resolution (integers; temperature to 0.1 °C).
"""

from __future__ import annotations

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


def score_resp_rate(rr: float) -> int:
    rr = round(rr)
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
    s = round(spo2)
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
    s = round(sbp)
    if s <= 90:
        return 3
    if s <= 100:
        return 2
    if s <= 110:
        return 1
    return 0 if s <= 219 else 3


def score_pulse(hr: float) -> int:
    h = round(hr)
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
    t = round(temp, 1)
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
