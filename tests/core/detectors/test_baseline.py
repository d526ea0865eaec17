"""Personal baseline deviation: bucket means against their rolling median / MAD, minimum
samples, episodes, batching and replays."""

from __future__ import annotations

import math
from itertools import pairwise

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.careplan import BaselineSetting, CarePlan, default_care_plan
from core.detectors.model import Detection, DetectionKind, iso
from core.detectors.rules.baseline import BaselineState, detect_baseline, median_mad
from core.rules import Rule, Severity
from core.wire import Reading

from .factory import at, events, series

# 10-minute buckets of one reading a minute; 24 buckets of baseline, judged from the 6th.
HR = BaselineSetting(metric="heart_rate", bucket_s=600, window=24, min_samples=6, min_mad=2.0)
PLAN = msgspec.structs.replace(default_care_plan("p1"), baselines=(HR,))


def steady_hr(n: int, seed: int = 7, level: float = 70.0) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(v) for v in np.round(level + rng.normal(0, 2, n))]


def run(readings: list[Reading], plan: CarePlan = PLAN) -> list[Detection]:
    return detect_baseline("p1", plan, BaselineState(), readings)[1]


def test_sustained_deviation_raises_then_clears() -> None:
    # 2 h steady (12 buckets), 20 min at ~105 (2 buckets), then steady again.
    values = [*steady_hr(120), *steady_hr(20, seed=9, level=105), *steady_hr(40, seed=8)]
    found = run(series("heart_rate", values))
    assert events(found) == [
        (Rule.BASELINE_DEVIATION, DetectionKind.RAISE),
        (Rule.BASELINE_DEVIATION, DetectionKind.CLEAR),
    ]
    raise_, clear = found
    assert raise_.detected_at == at(140)  # the reading that ended the second deviating bucket
    assert raise_.episode_start == at(120)  # the first deviating bucket's start
    assert raise_.severity is Severity.LOW
    evidence = raise_.evidence
    assert evidence["metric"] == "heart_rate"
    assert evidence["direction"] == "above"
    assert evidence["bucket"] == {"start": iso(at(130)), "end": iso(at(140)), "readings": 10}
    assert 68 <= evidence["median"] <= 72
    assert 100 <= evidence["value"] <= 110
    assert evidence["z"] > 3.5
    assert clear.detected_at == at(160)  # two ordinary buckets later
    assert clear.clears == raise_.detection_id


def test_one_deviating_bucket_does_not_raise() -> None:
    values = [*steady_hr(120), *steady_hr(10, seed=9, level=105), *steady_hr(40, seed=8)]
    assert run(series("heart_rate", values)) == []


def test_single_outlier_readings_are_absorbed_by_the_bucket_mean() -> None:
    values = steady_hr(200)
    for i in range(125, 200, 7):
        values[i] = 125.0  # an artefact every 7 minutes: one or two per bucket
    assert run(series("heart_rate", values)) == []


def test_nothing_is_judged_before_min_samples_buckets() -> None:
    # 4 steady buckets, then two high ones: each is judged only with 6 bucket means known.
    assert run(series("heart_rate", [*steady_hr(40), *[130.0] * 21])) == []
    found = run(series("heart_rate", [*steady_hr(60), *[130.0] * 21]))
    assert events(found) == [(Rule.BASELINE_DEVIATION, DetectionKind.RAISE)]


def test_drop_below_baseline_is_detected() -> None:
    found = run(series("heart_rate", [*steady_hr(120), *[45.0] * 21]))
    assert events(found) == [(Rule.BASELINE_DEVIATION, DetectionKind.RAISE)]
    assert found[0].evidence["direction"] == "below"


def test_min_mad_keeps_a_flat_series_from_alarming_on_a_wiggle() -> None:
    values = [*[70.0] * 120, *[73.0] * 30]  # MAD 0; 3 bpm is 0.6745 * 3 / 2 = 1.0 < 3.5
    assert run(series("heart_rate", values)) == []
    values = [*[70.0] * 120, *[81.0] * 30]  # 0.6745 * 11 / 2 = 3.7 > 3.5
    assert events(run(series("heart_rate", values))) == [(Rule.BASELINE_DEVIATION, DetectionKind.RAISE)]


def test_a_circadian_day_is_part_of_the_baseline() -> None:
    # Three days of one reading a minute in 30-minute buckets against 24 h of them (the default
    # setting): pulse 62 at night to 78 by day, with noise, raises nothing.
    setting = BaselineSetting(metric="heart_rate", min_mad=3.0)
    plan = msgspec.structs.replace(default_care_plan("p1"), baselines=(setting,))
    rng = np.random.default_rng(3)
    minutes = np.arange(3 * 24 * 60)
    hr = 70 + 8 * np.sin(2 * math.pi * (minutes / (24 * 60) - 0.25)) + rng.normal(0, 4, len(minutes))
    assert run(series("heart_rate", [float(round(v)) for v in hr]), plan) == []


def test_window_is_bounded_and_state_round_trips() -> None:
    state, _ = detect_baseline("p1", PLAN, BaselineState(), series("heart_rate", steady_hr(600)))
    assert len(state.series["heart_rate"].values) == HR.window
    again = msgspec.json.decode(msgspec.json.encode(state), type=BaselineState)
    assert again == state


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=199), max_size=6))
def test_batches_give_the_same_result_as_one_batch(cuts: list[int]) -> None:
    readings = series("heart_rate", [*steady_hr(120), *steady_hr(30, seed=9, level=105), *steady_hr(50, seed=8)])
    whole = run(readings)
    state, found = BaselineState(), []
    bounds = [0, *sorted(set(cuts)), len(readings)]
    for lo, hi in pairwise(bounds):
        state, part = detect_baseline("p1", PLAN, state, readings[lo:hi])
        found += part
    assert [d.detection_id for d in found] == [d.detection_id for d in whole]
    assert found == whole


def test_replay_after_saving_state_is_silent() -> None:
    readings = series("heart_rate", [*steady_hr(120), *steady_hr(30, seed=9, level=105)])
    state, first = detect_baseline("p1", PLAN, BaselineState(), readings)
    assert events(first) == [(Rule.BASELINE_DEVIATION, DetectionKind.RAISE)]
    again, replayed = detect_baseline("p1", PLAN, state, readings)
    assert replayed == []
    assert again == state


def test_median_and_mad_follow_their_definitions() -> None:
    assert median_mad([1.0, 2.0, 3.0, 4.0, 100.0]) == (3.0, 1.0)
    assert median_mad([1.0, 2.0, 3.0, 4.0]) == (2.5, 1.0)
