"""Device silence: 15 min warn / 30 min urgent for wearables, schedule-based for spot devices."""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path

import msgspec

from core.careplan import MeasurementSchedule, SilencePolicy, default_care_plan
from core.catalogue import DEVICE_CLASSES
from core.detectors.model import DetectionKind
from core.detectors.rules.silence import SilenceState, evaluate_silence, forget_device, observe_device
from core.rules import Rule, Severity

from .factory import at, events, reading

PLAN = default_care_plan("p1")


def seen(device_class: str = "wearable", minutes: float = 0, device_id: str = "w1") -> SilenceState:
    state, _ = observe_device("p1", SilenceState(), device_id, device_class, [reading("heart_rate", 70, minutes)])
    return state


def test_wearable_warns_at_15_and_escalates_at_30_minutes() -> None:
    state = seen()
    state, found = evaluate_silence("p1", PLAN, state, at(14.9))
    assert found == []
    state, found = evaluate_silence("p1", PLAN, state, at(16))
    assert events(found) == [(Rule.DEVICE_SILENT_WARN, DetectionKind.RAISE)]
    assert found[0].detected_at == at(15)
    assert found[0].severity is Severity.LOW
    assert found[0].evidence["device_id"] == "w1"
    state, again = evaluate_silence("p1", PLAN, state, at(20))
    assert again == []
    state, found = evaluate_silence("p1", PLAN, state, at(31))
    assert events(found) == [(Rule.DEVICE_SILENT_URGENT, DetectionKind.RAISE)]
    assert found[0].detected_at == at(30)
    assert found[0].severity is Severity.HIGH
    assert evaluate_silence("p1", PLAN, state, at(120))[1] == []


def test_long_gap_goes_straight_to_urgent() -> None:
    _, found = evaluate_silence("p1", PLAN, seen(), at(45))
    assert events(found) == [(Rule.DEVICE_SILENT_URGENT, DetectionKind.RAISE)]


def test_data_again_clears_the_silence() -> None:
    state, raised = evaluate_silence("p1", PLAN, seen(), at(16))
    state, raised2 = evaluate_silence("p1", PLAN, state, at(31))
    state, cleared = observe_device("p1", state, "w1", "wearable", [reading("heart_rate", 72, 40)])
    assert events(cleared) == [
        (Rule.DEVICE_SILENT_WARN, DetectionKind.CLEAR),
        (Rule.DEVICE_SILENT_URGENT, DetectionKind.CLEAR),
    ]
    assert [d.clears for d in cleared] == [raised[0].detection_id, raised2[0].detection_id]
    assert evaluate_silence("p1", PLAN, state, at(50))[1] == []


def test_backfilled_old_readings_do_not_clear() -> None:
    state, _ = evaluate_silence("p1", PLAN, seen(minutes=10), at(50))
    state, found = observe_device("p1", state, "w1", "wearable", [reading("heart_rate", 72, 5)])
    assert found == []
    assert state.devices["w1"].last_seen == at(10)


def test_silence_ids_are_deterministic() -> None:
    first = evaluate_silence("p1", PLAN, seen(), at(40))[1]
    second = evaluate_silence("p1", PLAN, seen(), at(55))[1]
    assert [d.detection_id for d in first] == [d.detection_id for d in second]


def test_spot_device_without_schedule_is_never_silent() -> None:
    assert evaluate_silence("p1", PLAN, seen("bp_cuff"), at(3 * 24 * 60))[1] == []


def test_spot_device_follows_the_schedule() -> None:
    plan = msgspec.structs.replace(
        PLAN,
        measurements=(MeasurementSchedule(metric="heart_rate", times_of_day=(time(8), time(20)), tolerance_s=3600),),
    )
    state = seen("bp_cuff")
    # Longest gap 12 h + 1 h tolerance -> warn at 13 h; two gaps -> urgent at 25 h.
    assert evaluate_silence("p1", plan, state, at(12 * 60))[1] == []
    state, found = evaluate_silence("p1", plan, state, at(13 * 60))
    assert events(found) == [(Rule.DEVICE_SILENT_WARN, DetectionKind.RAISE)]
    state, found = evaluate_silence("p1", plan, state, at(25 * 60))
    assert events(found) == [(Rule.DEVICE_SILENT_URGENT, DetectionKind.RAISE)]


def test_policy_off_and_custom_thresholds() -> None:
    off = msgspec.structs.replace(PLAN, silence={"wearable": SilencePolicy(mode="off")})
    assert evaluate_silence("p1", off, seen(), at(600))[1] == []
    tight = msgspec.structs.replace(
        PLAN, silence={"wearable": SilencePolicy(mode="continuous", warn_s=300, urgent_s=600)}
    )
    assert [d.detected_at for d in evaluate_silence("p1", tight, seen(), at(6))[1]] == [at(5)]


def test_forget_device() -> None:
    assert evaluate_silence("p1", PLAN, forget_device(seen(), "w1"), at(60))[1] == []


def test_device_count_is_bounded() -> None:
    state = SilenceState()
    for i in range(40):
        state, _ = observe_device("p1", state, f"d{i}", "wearable", [reading("heart_rate", 70, i)])
    assert len(state.devices) == 16
    assert "d39" in state.devices


# The classes the `devices` table accepts (its CHECK constraint in the first migration).
_BASE_SQL = (Path(__file__).parents[3] / "core" / "migrations" / "0001_base.sql").read_text()
REGISTERED_CLASSES = set(re.findall(r"'(\w+)'", re.search(r"device_class IN\s*\(([^)]*)\)", _BASE_SQL)[1]))


def test_every_device_class_has_a_policy() -> None:
    plan = PLAN
    assert set(DEVICE_CLASSES) == REGISTERED_CLASSES
    assert plan.silence_policy("wearable") == SilencePolicy(mode="continuous", warn_s=900, urgent_s=1800)
    assert {plan.silence_policy(c).mode for c in DEVICE_CLASSES if c != "wearable"} == {"schedule"}
