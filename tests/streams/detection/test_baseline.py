"""Personal baseline deviation: rolling median / MAD, minimum samples, episodes."""

from __future__ import annotations

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.careplan import BaselineSetting, CarePlan, default_care_plan
from core.rules import Rule, Severity
from core.wire import Reading
from streams.detection.baseline import BaselineState, detect_baseline, rolling_median_mad
from streams.detection.model import Detection, DetectionKind

from .factory import at, events, series

HR = BaselineSetting(metric="heart_rate", window=60, min_samples=20, min_mad=2.0)
PLAN = msgspec.structs.replace(default_care_plan("p1"), baselines=(HR,))


def steady_hr(n: int, seed: int = 7) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(v) for v in np.round(70 + rng.normal(0, 2, n))]


def run(readings: list[Reading], plan: CarePlan = PLAN) -> list[Detection]:
    return detect_baseline("p1", plan, BaselineState(), readings)[1]


def test_sustained_deviation_raises_then_clears() -> None:
    values = [*steady_hr(100), 105, 108, 110, 107, *steady_hr(5, seed=8)]
    found = run(series("heart_rate", values))
    assert events(found) == [
        (Rule.BASELINE_DEVIATION, DetectionKind.RAISE),
        (Rule.BASELINE_DEVIATION, DetectionKind.CLEAR),
    ]
    raise_, clear = found
    assert raise_.detected_at == at(102)  # third deviating reading
    assert raise_.episode_start == at(100)
    assert raise_.severity is Severity.LOW
    assert raise_.evidence["metric"] == "heart_rate"
    assert raise_.evidence["direction"] == "above"
    assert 68 <= raise_.evidence["median"] <= 72
    assert raise_.evidence["z"] > 3.5
    assert clear.detected_at == at(106)  # third ordinary reading after the episode
    assert clear.clears == raise_.detection_id


def test_a_single_outlier_does_not_raise() -> None:
    assert run(series("heart_rate", [*steady_hr(100), 120.0, *steady_hr(10, seed=3)])) == []


def test_nothing_fires_before_min_samples() -> None:
    values = [*steady_hr(10), 130, 130, 130, 130]  # only 10 readings known before the jump
    assert run(series("heart_rate", values)) == []


def test_drop_below_baseline_is_detected() -> None:
    found = run(series("heart_rate", [*steady_hr(60), 45, 44, 46]))
    assert found[0].evidence["direction"] == "below"


def test_min_mad_keeps_a_flat_series_from_alarming_on_a_wiggle() -> None:
    spo2 = BaselineSetting(metric="spo2", window=60, min_samples=20, min_mad=1.0)
    plan = msgspec.structs.replace(PLAN, baselines=(spo2,))
    assert run(series("spo2", [97] * 40 + [96, 96, 96]), plan) == []  # z = 0.67
    assert events(run(series("spo2", [97] * 40 + [90, 90, 90]), plan)) == [
        (Rule.BASELINE_DEVIATION, DetectionKind.RAISE)
    ]  # z = 4.7


def test_window_is_bounded_and_state_round_trips() -> None:
    state, _ = detect_baseline("p1", PLAN, BaselineState(), series("heart_rate", steady_hr(500)))
    assert len(state.series["heart_rate"].values) == HR.window
    saved = msgspec.json.decode(msgspec.json.encode(state), type=BaselineState)
    assert saved == state


def test_batches_give_the_same_result_as_one_batch() -> None:
    values = [*steady_hr(150), 110, 112, 111, 109, *steady_hr(20, seed=9)]
    readings = series("heart_rate", values)
    whole = run(readings)
    state, pieces = BaselineState(), []
    for lo in range(0, len(readings), 7):
        state, found = detect_baseline("p1", PLAN, state, readings[lo : lo + 7])
        pieces.extend(found)
    assert pieces == whole
    assert len(whole) == 2


def test_replay_after_saving_state_is_silent() -> None:
    readings = series("heart_rate", [*steady_hr(100), 110, 112, 111])
    state, first = detect_baseline("p1", PLAN, BaselineState(), readings)
    assert len(first) == 1
    assert detect_baseline("p1", PLAN, state, readings)[1] == []


def _reference(history: list[float], new: list[float], window: int, min_samples: int) -> list[tuple[float, float]]:
    values = history[-window:] + new
    out = []
    for i in range(len(history[-window:]), len(values)):
        w = np.array(values[max(0, i - window) : i])
        if len(w) < min_samples:
            out.append((np.nan, np.nan))
        else:
            m = float(np.median(w))
            out.append((m, float(np.median(np.abs(w - m)))))
    return out


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(min_value=20, max_value=200), max_size=40),
    st.lists(st.floats(min_value=20, max_value=200), min_size=1, max_size=40),
    st.integers(min_value=1, max_value=30),
    st.integers(min_value=1, max_value=30),
)
def test_vectorised_statistics_match_a_plain_loop(
    history: list[float], new: list[float], window: int, min_samples: int
) -> None:
    min_samples = min(min_samples, window)
    median, mad = rolling_median_mad(np.array(history), np.array(new), window, min_samples)
    expected = np.array(_reference(history, new, window, min_samples)).reshape(-1, 2)
    np.testing.assert_allclose(median, expected[:, 0], equal_nan=True)
    np.testing.assert_allclose(mad, expected[:, 1], equal_nan=True)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=20, max_value=200), min_size=1, max_size=150))
def test_median_and_mad_of_a_sorted_window_match_numpy(window: list[float]) -> None:
    from streams.detection.baseline import _sorted_stats

    m, mad = _sorted_stats(sorted(window))
    w = np.array(window)
    assert m == float(np.median(w))
    assert mad == float(np.median(np.abs(w - np.median(w))))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(min_value=20, max_value=200).map(round), min_size=1, max_size=60),
    st.integers(min_value=1, max_value=20),
)
def test_sliding_windows_match_fresh_windows(values: list[float], width: int) -> None:
    from streams.detection.baseline import _sliding_stats, _sorted_stats

    spans = [(max(0, hi - width), hi) for hi in range(1, len(values) + 1)]
    assert _sliding_stats(values, spans) == [_sorted_stats(sorted(values[lo:hi])) for lo, hi in spans]
