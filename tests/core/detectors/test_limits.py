"""Out-of-range limits: sustained duration, repeat count, hysteresis (reference/clinical.md)."""

from __future__ import annotations

from itertools import cycle, islice, pairwise

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from core.careplan import CarePlan, Limit, default_care_plan
from core.detectors.model import Detection, DetectionKind
from core.detectors.rules.limits import LimitsState, detect_limits
from core.rules import Rule, Severity
from core.wire import Reading

from .factory import at, cleared, events, raised, reading, series

PLAN = default_care_plan("p1")


def run(readings: list[Reading], plan: CarePlan = PLAN, state: LimitsState | None = None) -> list[Detection]:
    _, found = detect_limits("p1", plan, state or LimitsState(), readings)
    return found


def test_oscillating_89_91_raises_exactly_once() -> None:
    trace = series("spo2", islice(cycle([89, 91]), 180))  # three hours, one reading a minute
    found = run(trace)
    assert events(found) == [(Rule.SPO2_LOW, DetectionKind.RAISE)]
    assert found[0].detected_at == at(10)  # sustained 10 min from the first 89
    assert found[0].severity is Severity.HIGH


def test_oscillation_after_a_sustained_drop_still_raises_once() -> None:
    trace = series("spo2", [88] * 15 + list(islice(cycle([89, 91]), 120)))
    assert events(run(trace)) == [(Rule.SPO2_LOW, DetectionKind.RAISE)]


def test_below_90_for_less_than_10_minutes_does_not_raise() -> None:
    assert run(series("spo2", [89] * 10 + [93] * 20)) == []  # 89 at 0..9 min: 9 minutes


def test_below_90_for_10_minutes_raises_at_10_minutes() -> None:
    found = run(series("spo2", [89] * 11))
    assert [d.detected_at for d in raised(found)] == [at(10)]
    evidence = found[0].evidence
    assert (evidence["raise_at"], evidence["clear_at"], evidence["sustained_s"]) == (90, 92, 600)
    assert evidence["window"] == {
        "start": at(0).isoformat(timespec="microseconds"),
        "end": at(10).isoformat(timespec="microseconds"),
    }


def test_a_recovered_reading_resets_the_pending_episode() -> None:
    trace = series("spo2", [89] * 8 + [92] + [89] * 8)
    assert run(trace) == []


def test_dead_band_alone_never_raises_and_a_single_dip_expires() -> None:
    # One 89 then 91s: no reading below 90 for more than max_gap (10 min), so it restarts.
    trace = series("spo2", [89] + [91] * 15 + [89] + [91] * 5)
    assert run(trace) == []
    assert run(series("spo2", [91] * 60)) == []


def test_hysteresis_clears_only_after_92_sustained_10_minutes() -> None:
    down = series("spo2", [88] * 11)  # raises at 10 min
    # 92 for 9 minutes, a 91, then >= 92 from minute 21 for 10 minutes.
    back = series("spo2", [92] * 9 + [91] + [92, 95, 97, 92, 93, 94, 96, 92, 92, 93, 92], start=11)
    found = run(down + back)
    assert events(found) == [(Rule.SPO2_LOW, DetectionKind.RAISE), (Rule.SPO2_LOW, DetectionKind.CLEAR)]
    raise_, clear = found
    assert clear.detected_at == at(31)  # 92 from minute 21, sustained to minute 31
    assert clear.clears == raise_.detection_id
    assert clear.severity is Severity.INFO
    assert clear.episode_start == raise_.episode_start == at(0)


def test_91_never_clears() -> None:
    found = run(series("spo2", [88] * 11 + [91] * 120))
    assert cleared(found) == []


def test_a_second_episode_after_a_clear_gets_a_new_id() -> None:
    trace = series("spo2", [88] * 11 + [95] * 11 + [88] * 11)
    found = run(trace)
    assert events(found) == [
        (Rule.SPO2_LOW, DetectionKind.RAISE),
        (Rule.SPO2_LOW, DetectionKind.CLEAR),
        (Rule.SPO2_LOW, DetectionKind.RAISE),
    ]
    assert found[0].detection_id != found[2].detection_id


def test_repeat_count_needs_that_many_readings() -> None:
    limit = Limit(
        rule=Rule.HEART_RATE_HIGH, metric="heart_rate", direction="high", raise_at=130, clear_at=100, repeat_count=3
    )
    plan = msgspec.structs.replace(PLAN, limits=(limit,))
    assert run(series("heart_rate", [140, 140]), plan) == []
    found = run(series("heart_rate", [140, 140, 140]), plan)
    assert [d.detected_at for d in raised(found)] == [at(2)]


def test_heart_rate_high_default_is_sustained_five_minutes() -> None:
    assert run(series("heart_rate", [135] * 5)) == []
    found = run(series("heart_rate", [135] * 6))
    assert events(found) == [(Rule.HEART_RATE_HIGH, DetectionKind.RAISE)]
    assert found[0].evidence["worst"] == 135


def test_temperature_spot_reading_raises_and_clears_at_once() -> None:
    found = run([reading("body_temp", 39.4, 0), reading("body_temp", 37.9, 240)])
    assert events(found) == [(Rule.TEMP_HIGH, DetectionKind.RAISE), (Rule.TEMP_HIGH, DetectionKind.CLEAR)]


def test_disabled_limit_does_nothing() -> None:
    limits = tuple(msgspec.structs.replace(lim, enabled=False) for lim in PLAN.limits)
    plan = msgspec.structs.replace(PLAN, limits=limits)
    assert run(series("spo2", [80] * 30), plan) == []


def test_replaying_a_batch_after_saving_state_raises_nothing_new() -> None:
    batch = series("spo2", [88] * 12)
    state, first = detect_limits("p1", PLAN, LimitsState(), batch)
    saved = msgspec.json.decode(msgspec.json.encode(state), type=LimitsState)
    _, again = detect_limits("p1", PLAN, saved, batch)
    assert len(first) == 1
    assert again == []


def test_same_input_twice_gives_same_ids() -> None:
    batch = series("spo2", [88] * 12 + [95] * 12)
    assert [d.detection_id for d in run(batch)] == [d.detection_id for d in run(batch)]


def test_ids_differ_between_patients() -> None:
    batch = series("spo2", [88] * 12)
    _, other = detect_limits("p2", PLAN, LimitsState(), batch)
    assert run(batch)[0].detection_id != other[0].detection_id


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from([86.0, 89.0, 90.0, 91.0, 92.0, 95.0]), min_size=1, max_size=80),
    st.lists(st.integers(min_value=1, max_value=80), max_size=6),
)
def test_batching_and_state_round_trips_do_not_change_the_outcome(values: list[float], cuts: list[int]) -> None:
    trace = series("spo2", values)
    whole = run(trace)
    state = LimitsState()
    pieces: list[Detection] = []
    bounds = sorted({0, len(trace), *(c for c in cuts if c < len(trace))})
    for lo, hi in pairwise(bounds):
        state, found = detect_limits("p1", PLAN, state, trace[lo:hi])
        state = msgspec.json.decode(msgspec.json.encode(state), type=LimitsState)
        pieces.extend(found)
    assert pieces == whole
    # Raises and clears alternate: never two raises without a clear between them.
    kinds = [d.kind for d in whole]
    assert all(a != b for a, b in pairwise(kinds))
