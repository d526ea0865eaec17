"""Heart-failure weight gain and glucose levels (reference/clinical.md)."""

from __future__ import annotations

from itertools import cycle, islice

import msgspec
import pytest

from core.careplan import CarePlan, HfWeightGain, default_care_plan
from core.detectors.model import Detection, DetectionKind
from core.detectors.rules.glucose import GlucoseState, detect_glucose
from core.detectors.rules.weight import MAX_POINTS, WeightState, detect_weight_gain
from core.rules import Rule, Severity
from core.wire import Reading

from .factory import at, events, reading, series

DAY = 24 * 60
HF_PLAN = msgspec.structs.replace(default_care_plan("p1"), hf_weight=HfWeightGain(enabled=True))
PLAN = default_care_plan("p1")


def weigh(*kg_by_day: tuple[float, float]) -> list[Reading]:
    """(day, kg) pairs, weighed at 06:00 UTC + day."""
    return [reading("body_weight", kg, day * DAY) for day, kg in kg_by_day]


def run_weight(readings: list[Reading], plan: CarePlan = HF_PLAN) -> list[Detection]:
    return detect_weight_gain("p1", plan, WeightState(), readings)[1]


def test_weight_rule_is_off_without_a_heart_failure_plan() -> None:
    assert run_weight(weigh((0, 80.0), (1, 83.0)), PLAN) == []


@pytest.mark.parametrize(("before", "after"), [(80.0, 81.4), (68.7, 70.1), (75.3, 76.7)])
def test_gain_of_1_4_kg_in_a_day_fires(before: float, after: float) -> None:
    found = run_weight(weigh((0, before), (1, after)))
    assert events(found) == [(Rule.HF_WEIGHT_GAIN_1D, DetectionKind.RAISE)]
    assert found[0].severity is Severity.HIGH
    assert found[0].evidence["gain_kg"] == pytest.approx(1.4)
    assert found[0].evidence["reference_kg"] == before


def test_gain_of_1_3_kg_in_a_day_does_not_fire() -> None:
    assert run_weight(weigh((0, 80.0), (1, 81.3))) == []


def test_yesterdays_later_weigh_in_still_counts_within_slack() -> None:
    readings = [reading("body_weight", 80.0, 2 * 60), reading("body_weight", 81.5, DAY)]  # 08:00 then 06:00
    assert events(run_weight(readings)) == [(Rule.HF_WEIGHT_GAIN_1D, DetectionKind.RAISE)]


def test_gain_of_2_3_kg_in_7_days_fires_without_a_daily_alarm() -> None:
    found = run_weight(weigh((0, 80.0), (1, 80.4), (2, 80.8), (3, 81.2), (4, 81.5), (5, 81.8), (6, 82.0), (7, 82.3)))
    assert events(found) == [(Rule.HF_WEIGHT_GAIN_7D, DetectionKind.RAISE)]
    assert found[0].detected_at == at(7 * DAY)
    assert found[0].evidence["gain_kg"] == pytest.approx(2.3)


def test_gain_of_2_2_kg_in_7_days_does_not_fire() -> None:
    assert run_weight(weigh((0, 80.0), (3, 81.0), (7, 82.2))) == []


def test_reference_older_than_a_week_no_longer_counts() -> None:
    assert run_weight(weigh((0, 80.0), (8, 82.5))) == []


def test_weight_episode_raises_once_and_clears_when_the_gain_is_gone() -> None:
    # Stable at +1.5 kg for two more days: still the same episode, no second raise, no clear.
    found = run_weight(weigh((0, 80.0), (1, 81.5), (1.5, 81.6), (2.5, 81.5), (3.5, 80.1)))
    assert events(found) == [
        (Rule.HF_WEIGHT_GAIN_1D, DetectionKind.RAISE),
        (Rule.HF_WEIGHT_GAIN_1D, DetectionKind.CLEAR),
    ]
    assert found[1].detected_at == at(3.5 * DAY)
    assert found[1].evidence["episode_reference_kg"] == 80.0


def test_weight_state_is_bounded() -> None:
    # Rising weight every 10 minutes for 8 days: the monotonic queue cannot shrink it, the cap does.
    readings = [reading("body_weight", 70 + i * 0.001, i * 10) for i in range(8 * 144)]
    state, _ = detect_weight_gain("p1", HF_PLAN, WeightState(), readings)
    assert len(state.minima) <= MAX_POINTS


def run_glucose(readings: list[Reading], state: GlucoseState | None = None) -> list[Detection]:
    return detect_glucose("p1", PLAN, state or GlucoseState(), readings)[1]


def test_69_is_level_1() -> None:
    found = run_glucose([reading("glucose", 69, 0)])
    assert events(found) == [(Rule.GLUCOSE_LOW_L1, DetectionKind.RAISE)]
    assert found[0].severity is Severity.MEDIUM


def test_53_is_level_2_only() -> None:
    found = run_glucose([reading("glucose", 53, 0)])
    assert events(found) == [(Rule.GLUCOSE_LOW_L2, DetectionKind.RAISE)]
    assert found[0].severity is Severity.HIGH


@pytest.mark.parametrize(
    ("value", "expected"), [(54, [Rule.GLUCOSE_LOW_L1]), (70, []), (250, []), (251, [Rule.GLUCOSE_HIGH])]
)
def test_level_edges(value: float, expected: list[Rule]) -> None:
    assert [d.rule for d in run_glucose([reading("glucose", value, 0)])] == expected


def test_hypo_episode_escalates_once_and_clears_after_15_minutes_in_range() -> None:
    readings = series("glucose", [69, 60, 53, 50, 60, 80, 85, 90, 95], step=5)
    found = run_glucose(readings)
    assert events(found) == [
        (Rule.GLUCOSE_LOW_L1, DetectionKind.RAISE),
        (Rule.GLUCOSE_LOW_L2, DetectionKind.RAISE),
        (Rule.GLUCOSE_LOW_L1, DetectionKind.CLEAR),
        (Rule.GLUCOSE_LOW_L2, DetectionKind.CLEAR),
    ]
    assert found[2].detected_at == at(40)  # 80 from minute 25, in range for 15 minutes


def test_cgm_flapping_across_70_raises_once() -> None:
    found = run_glucose(series("glucose", islice(cycle([69, 71]), 48), step=5))
    assert events(found) == [(Rule.GLUCOSE_LOW_L1, DetectionKind.RAISE)]


def test_hyperglycaemia_episode() -> None:
    found = run_glucose(series("glucose", [260, 300, 240, 230, 220, 210], step=10))
    assert events(found) == [(Rule.GLUCOSE_HIGH, DetectionKind.RAISE), (Rule.GLUCOSE_HIGH, DetectionKind.CLEAR)]


def test_glucose_replay_after_saved_state_is_silent() -> None:
    batch = [reading("glucose", 50, 0)]
    state, first = detect_glucose("p1", PLAN, GlucoseState(), batch)
    saved = msgspec.json.decode(msgspec.json.encode(state), type=GlucoseState)
    assert len(first) == 1
    assert detect_glucose("p1", PLAN, saved, batch)[1] == []


HF_3D_PLAN = msgspec.structs.replace(HF_PLAN, hf_weight=HfWeightGain(enabled=True, gain_3d_kg=2.0))


def test_a_plans_3_day_window_raises_2_kg_in_3_days() -> None:
    steady = weigh((0, 80.0), (1, 80.7), (2, 81.4), (3, 82.0))  # +0.7 kg a day: under the 1-day limit
    assert run_weight(steady) == []  # the default plan has no 3-day rule and 2.0 < 2.3 kg in 7 days
    found = run_weight(steady, HF_3D_PLAN)
    assert events(found) == [(Rule.HF_WEIGHT_GAIN_3D, DetectionKind.RAISE)]
    assert found[0].detected_at == at(3 * DAY)
    assert found[0].evidence["limit_kg"] == 2.0


def test_the_3_day_window_does_not_reach_back_a_week() -> None:
    assert run_weight(weigh((0, 80.0), (4, 81.0), (5, 81.9)), HF_3D_PLAN) == []


def test_weight_gain_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        HfWeightGain(gain_3d_kg=0)
