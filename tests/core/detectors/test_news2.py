"""NEWS2 scoring: every checkable point of reference/clinical.md, bands, rounding, missing."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.detectors.news2 import (
    PARAMETERS,
    News2Input,
    Risk,
    band,
    round_half_up,
    score_air_or_oxygen,
    score_body_temp,
    score_bp_systolic,
    score_consciousness,
    score_heart_rate,
    score_news2,
    score_resp_rate,
    score_spo2,
)
from core.rules import Rule, Severity


@pytest.mark.parametrize(("rr", "expected"), [(8, 3), (9, 1), (12, 0), (21, 2), (25, 3)])
def test_resp_rate_points(rr: float, expected: int) -> None:
    assert score_resp_rate(rr) == expected


@pytest.mark.parametrize(("spo2", "expected"), [(91, 3), (93, 2), (95, 1), (96, 0)])
def test_spo2_scale1_points(spo2: float, expected: int) -> None:
    assert score_spo2(spo2, scale=1) == expected
    # Scale 1 does not depend on oxygen.
    assert score_spo2(spo2, scale=1, on_oxygen=True) == expected


def test_oxygen_adds_two() -> None:
    assert score_air_or_oxygen(True) == 2
    assert score_air_or_oxygen(False) == 0
    base = News2Input(resp_rate=16, spo2=97, bp_systolic=120, heart_rate=70, consciousness="A", body_temp=37.0)
    on_air = score_news2(News2Input(**{**_fields(base), "on_oxygen": False}))
    on_o2 = score_news2(News2Input(**{**_fields(base), "on_oxygen": True}))
    assert (on_air.total, on_o2.total) == (0, 2)


@pytest.mark.parametrize(("sbp", "expected"), [(90, 3), (100, 2), (110, 1), (219, 0), (220, 3)])
def test_systolic_points(sbp: float, expected: int) -> None:
    assert score_bp_systolic(sbp) == expected


@pytest.mark.parametrize(("pulse", "expected"), [(40, 3), (50, 1), (90, 0), (91, 1), (111, 2), (131, 3)])
def test_pulse_points(pulse: float, expected: int) -> None:
    assert score_heart_rate(pulse) == expected


@pytest.mark.parametrize(("temp", "expected"), [(35.0, 3), (36.0, 1), (38.0, 0), (38.1, 1), (39.1, 2)])
def test_temperature_points(temp: float, expected: int) -> None:
    assert score_body_temp(temp) == expected


@pytest.mark.parametrize(("level", "expected"), [("A", 0), ("C", 3), ("V", 3), ("P", 3), ("U", 3)])
def test_consciousness(level: str, expected: int) -> None:
    assert score_consciousness(level) == expected  # type: ignore[arg-type]


def test_new_confusion_scores_three_in_total() -> None:
    result = score_news2(News2Input(consciousness="C"))
    assert result.scores["consciousness"] == 3
    assert result.rule is Rule.NEWS2_SINGLE_PARAMETER


@pytest.mark.parametrize("spo2", [88, 89, 90, 91, 92])
def test_scale2_target_range_on_air_scores_zero(spo2: float) -> None:
    assert score_spo2(spo2, scale=2, on_oxygen=False) == 0
    assert score_spo2(spo2, scale=2, on_oxygen=True) == 0


@pytest.mark.parametrize(
    ("spo2", "on_oxygen", "expected"),
    [
        (93, False, 0),
        (97, False, 0),
        (93, True, 1),
        (94, True, 1),
        (95, True, 2),
        (96, True, 2),
        (97, True, 3),
        (83, False, 3),
        (84, False, 2),
        (85, True, 2),
        (86, False, 1),
        (87, True, 1),
    ],
)
def test_scale2_points(spo2: float, on_oxygen: bool, expected: int) -> None:
    assert score_spo2(spo2, scale=2, on_oxygen=on_oxygen) == expected


def test_scale2_on_oxygen_total_includes_oxygen_point() -> None:
    result = score_news2(News2Input(spo2=95, on_oxygen=True), scale=2)
    assert result.scores == {"spo2": 2, "air_or_oxygen": 2}
    assert result.total == 4
    assert result.scale == 2


@pytest.mark.parametrize(
    ("value", "resolution", "expected"),
    [
        (11.5, "1", "12"),
        (11.49, "1", "11"),
        (20.5, "1", "21"),
        (36.05, "0.1", "36.1"),
        (36.04, "0.1", "36.0"),
        (38.05, "0.1", "38.1"),
        (35.05, "0.1", "35.1"),
    ],
)
def test_rounding_is_half_up_on_decimal_text(value: float, resolution: str, expected: str) -> None:
    assert round_half_up(value, Decimal(resolution)) == Decimal(expected)


def test_real_values_score_at_table_resolution() -> None:
    assert score_resp_rate(11.5) == 0  # 12
    assert score_resp_rate(11.4) == 1  # 11
    assert score_spo2(95.5) == 0  # 96
    assert score_heart_rate(90.5) == 1  # 91
    assert score_bp_systolic(219.5) == 3  # 220
    assert score_body_temp(36.05) == 0  # 36.1
    assert score_body_temp(36.04) == 1  # 36.0
    assert score_body_temp(35.04) == 3  # 35.0
    assert score_body_temp(39.05) == 2  # 39.1


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="non-finite"):
        score_resp_rate(bad)


@pytest.mark.parametrize(
    ("total", "max_single", "risk", "rule", "severity"),
    [
        (0, 0, Risk.LOW, None, Severity.INFO),
        (1, 1, Risk.LOW, Rule.NEWS2_LOW, Severity.LOW),
        (4, 2, Risk.LOW, Rule.NEWS2_LOW, Severity.LOW),
        (3, 3, Risk.LOW_MEDIUM, Rule.NEWS2_SINGLE_PARAMETER, Severity.MEDIUM),
        (4, 3, Risk.LOW_MEDIUM, Rule.NEWS2_SINGLE_PARAMETER, Severity.MEDIUM),
        (5, 2, Risk.MEDIUM, Rule.NEWS2_MEDIUM, Severity.HIGH),
        (6, 3, Risk.MEDIUM, Rule.NEWS2_MEDIUM, Severity.HIGH),
        (7, 2, Risk.HIGH, Rule.NEWS2_HIGH, Severity.CRITICAL),
        (20, 3, Risk.HIGH, Rule.NEWS2_HIGH, Severity.CRITICAL),
    ],
)
def test_bands(total: int, max_single: int, risk: Risk, rule: Rule | None, severity: Severity) -> None:
    assert band(total, max_single) == (risk, rule, severity)


def test_complete_set_high_band() -> None:
    # RR 24 (2), SpO2 94 (1), air (0), SBP 105 (1), pulse 115 (2), alert (0), 38.5 °C (1) = 7.
    result = score_news2(
        News2Input(
            resp_rate=24, spo2=94, on_oxygen=False, bp_systolic=105, heart_rate=115, consciousness="A", body_temp=38.5
        )
    )
    assert result.total == 7
    assert result.missing == ()
    assert result.complete
    assert (result.risk, result.rule, result.severity) == (Risk.HIGH, Rule.NEWS2_HIGH, Severity.CRITICAL)


def test_missing_parameters_are_listed_not_scored() -> None:
    result = score_news2(News2Input(resp_rate=26, heart_rate=70))
    assert result.scores == {"resp_rate": 3, "heart_rate": 0}
    assert result.missing == ("spo2", "air_or_oxygen", "bp_systolic", "consciousness", "body_temp")
    assert not result.complete
    assert result.total == 3
    assert result.rule is Rule.NEWS2_SINGLE_PARAMETER


def test_nothing_measured_is_all_missing_not_a_zero_score() -> None:
    result = score_news2(News2Input())
    assert result.missing == PARAMETERS
    assert result.scores == {}
    assert not result.complete


def test_scale2_unknown_oxygen_is_scored_as_lower_bound_and_reported() -> None:
    result = score_news2(News2Input(spo2=97), scale=2)
    assert result.scores["spo2"] == 0
    assert "air_or_oxygen" in result.missing


def _fields(obs: News2Input) -> dict[str, object]:
    return {f: getattr(obs, f) for f in obs.__struct_fields__}


_maybe = st.none() | st.floats(min_value=0, max_value=300, allow_nan=False)
_inputs = st.builds(
    News2Input,
    resp_rate=_maybe,
    spo2=st.none() | st.floats(min_value=50, max_value=100),
    on_oxygen=st.none() | st.booleans(),
    bp_systolic=_maybe,
    heart_rate=_maybe,
    consciousness=st.none() | st.sampled_from(["A", "C", "V", "P", "U"]),
    body_temp=st.none() | st.floats(min_value=30, max_value=45),
)


@settings(max_examples=300, deadline=None)
@given(_inputs, st.sampled_from([1, 2]))
def test_total_is_sum_and_parameters_partition(obs: News2Input, scale: int) -> None:
    result = score_news2(obs, scale=scale)  # type: ignore[arg-type]
    assert result.total == sum(result.scores.values())
    assert 0 <= result.total <= 20
    assert set(result.scores).isdisjoint(result.missing)
    assert set(result.scores) | set(result.missing) == set(PARAMETERS)
    assert result.complete == (not result.missing)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=2, max_value=80), st.floats(min_value=30, max_value=45))
def test_a_value_scores_like_its_rounded_value(rr: float, temp: float) -> None:
    assert score_resp_rate(rr) == score_resp_rate(float(round_half_up(rr)))
    assert score_body_temp(temp) == score_body_temp(float(round_half_up(temp, Decimal("0.1"))))


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=50, max_value=100))
def test_scale2_oxygen_never_lowers_the_spo2_score(spo2: int) -> None:
    assert score_spo2(spo2, scale=2, on_oxygen=True) >= score_spo2(spo2, scale=2, on_oxygen=False)
