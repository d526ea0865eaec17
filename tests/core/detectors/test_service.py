"""The whole detector set as the Faust agents call it: ids, replays, batching, state size."""

from __future__ import annotations

import random
from datetime import UTC, timedelta, timezone
from itertools import cycle, groupby, islice, pairwise

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.careplan import BaselineSetting, HfWeightGain, default_care_plan
from core.detectors.model import Detection, DetectionKind, decode_detection
from core.detectors.service import DetectorState, detect_due, detect_readings, dump_state, load_state
from core.rules import Rule
from core.wire import Reading

from .factory import T0, at, reading, series

# Baseline in 10-minute buckets, judged from the third: the two-hour scenario can show it.
PLAN = msgspec.structs.replace(
    default_care_plan("p1"),
    hf_weight=HfWeightGain(enabled=True),
    baselines=(BaselineSetting(metric="heart_rate", bucket_s=600, min_samples=3, min_mad=3.0),),
)


def scenario() -> list[Reading]:
    """Two hours of a deteriorating patient plus spot measurements (sorted by time)."""
    readings: list[Reading] = []
    readings += series("spo2", [96] * 20 + list(islice(cycle([89, 91]), 40)) + [95] * 60)
    readings += series("heart_rate", [72] * 40 + [118] * 40 + [80] * 40)
    readings += series("resp_rate", [16] * 40 + [23] * 40 + [18] * 40)
    readings += series("body_temp", [37.0, 38.4, 37.2], step=40)
    for minute, (sbp, dbp) in zip((10, 16, 70), ((186, 118), (183, 121), (150, 90)), strict=True):
        readings += [reading("bp_systolic", sbp, minute), reading("bp_diastolic", dbp, minute)]
    readings += [reading("glucose", v, m) for v, m in ((110, 5), (64, 50), (52, 65), (95, 80), (100, 100))]
    readings += [reading("body_weight", 80.0, -24 * 60), reading("body_weight", 81.6, 30)]
    readings.sort(key=lambda r: r.ts)
    return readings


def run_in_batches(batches: list[list[Reading]]) -> tuple[DetectorState, list[Detection]]:
    state, found = DetectorState(), []
    for batch in batches:
        state, new = detect_readings("p1", PLAN, load_state(dump_state(state)), batch)
        found += new
    return state, found


def test_scenario_raises_what_the_clinical_reference_expects() -> None:
    _, found = detect_readings("p1", PLAN, DetectorState(), scenario())
    raised = {d.rule for d in found if d.kind is DetectionKind.RAISE}
    assert {
        Rule.SPO2_LOW,
        Rule.BP_CRISIS_UNCONFIRMED,
        Rule.BP_CRISIS_CONFIRMED,
        Rule.GLUCOSE_LOW_L1,
        Rule.GLUCOSE_LOW_L2,
        Rule.HF_WEIGHT_GAIN_1D,
        Rule.NEWS2_HIGH,
        Rule.BASELINE_DEVIATION,
    } <= raised
    assert sum(1 for d in found if d.rule is Rule.SPO2_LOW and d.kind is DetectionKind.RAISE) == 1
    assert [d.detected_at for d in found] == sorted(d.detected_at for d in found)
    assert all(d.detected_at.tzinfo is UTC for d in found)


def test_same_input_twice_gives_the_same_ids() -> None:
    _, first = detect_readings("p1", PLAN, DetectorState(), scenario())
    _, second = detect_readings("p1", PLAN, DetectorState(), scenario())
    assert [d.detection_id for d in first] == [d.detection_id for d in second]
    assert len({d.detection_id for d in first}) == len(first)


def test_replaying_the_batch_after_the_state_was_saved_detects_nothing() -> None:
    state, first = detect_readings("p1", PLAN, DetectorState(), scenario())
    saved = load_state(dump_state(state))
    _, again = detect_readings("p1", PLAN, saved, scenario())
    assert first
    assert again == []


def test_unsorted_batch_is_handled_like_a_sorted_one() -> None:
    shuffled = scenario()
    random.Random(4).shuffle(shuffled)
    assert detect_readings("p1", PLAN, DetectorState(), shuffled) == detect_readings(
        "p1", PLAN, DetectorState(), scenario()
    )


def test_other_utc_offsets_give_the_same_detections() -> None:
    plus2 = timezone(timedelta(hours=2))
    shifted = [Reading(r.metric, r.value, r.ts.astimezone(plus2), r.dose_id) for r in scenario()]
    assert (
        detect_readings("p1", PLAN, DetectorState(), shifted)[1]
        == detect_readings("p1", PLAN, DetectorState(), scenario())[1]
    )


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        detect_readings("p1", PLAN, DetectorState(), [Reading("spo2", 95, T0.replace(tzinfo=None))])


def test_detections_round_trip_as_json() -> None:
    _, found = detect_readings("p1", PLAN, DetectorState(), scenario())
    for d in found:
        assert decode_detection(msgspec.json.encode(d)) == d


_SCENARIO = scenario()
_TIMES = sorted({r.ts for r in _SCENARIO})


@settings(max_examples=25, deadline=None)
@given(st.sets(st.integers(min_value=1, max_value=len(_TIMES) - 1), max_size=12))
def test_any_batching_at_time_boundaries_gives_the_same_detections(cuts: set[int]) -> None:
    groups = [list(g) for _, g in groupby(_SCENARIO, key=lambda r: r.ts)]
    bounds = [0, *sorted(cuts), len(groups)]
    batches = [[r for g in groups[lo:hi] for r in g] for lo, hi in pairwise(bounds)]
    _, whole = detect_readings("p1", PLAN, DetectorState(), _SCENARIO)
    _, pieces = run_in_batches(batches)
    assert pieces == whole


def test_state_stays_bounded_over_days_of_wearable_data() -> None:
    minutes = 3 * 24 * 60
    batches = []
    for lo in range(0, minutes, 240):
        batch = []
        for m in range(lo, lo + 240):
            batch += [
                reading("heart_rate", 70 + m % 7, m),
                reading("spo2", 95 + m % 3, m),
                reading("resp_rate", 14 + m % 4, m),
            ]
        batches.append(batch)
    state, _ = run_in_batches(batches)
    size = len(dump_state(state))
    assert size < 16 * 1024, size


def test_detect_due_reports_silence_and_keeps_reading_state() -> None:
    state, _ = detect_readings(
        "p1", PLAN, DetectorState(), series("heart_rate", [70] * 5), device_id="w1", device_class="wearable"
    )
    state, found = detect_due("p1", PLAN, state, at(4 + 31))
    assert [(d.rule, d.kind) for d in found] == [(Rule.DEVICE_SILENT_URGENT, DetectionKind.RAISE)]
    assert state.limits == detect_readings("p1", PLAN, DetectorState(), series("heart_rate", [70] * 5))[0].limits
    assert detect_due("p1", PLAN, state, at(60))[1] == []
    _, cleared = detect_readings(
        "p1", PLAN, state, [reading("heart_rate", 71, 61)], device_id="w1", device_class="wearable"
    )
    assert [(d.rule, d.kind) for d in cleared] == [(Rule.DEVICE_SILENT_URGENT, DetectionKind.CLEAR)]


def test_load_state_starts_afresh_without_data_or_on_an_old_schema() -> None:
    assert load_state(None) == DetectorState()
    assert load_state(dump_state(msgspec.structs.replace(DetectorState(), schema=0))) == DetectorState()
