"""BP >= 180/120 confirmed by a repeat reading (reference/clinical.md, AHA home BP guidance)."""

from __future__ import annotations

import msgspec

from core.careplan import default_care_plan
from core.detectors.model import Detection, DetectionKind
from core.detectors.rules.bp import BpState, detect_bp_crisis
from core.rules import Rule, Severity
from core.wire import Reading

from .factory import at, events, raised, reading

PLAN = default_care_plan("p1")
UNCONFIRMED = (Rule.BP_CRISIS_UNCONFIRMED, DetectionKind.RAISE)
CONFIRMED = (Rule.BP_CRISIS_CONFIRMED, DetectionKind.RAISE)


def bp(systolic: float, diastolic: float, minutes: float) -> list[Reading]:
    return [reading("bp_systolic", systolic, minutes), reading("bp_diastolic", diastolic, minutes)]


def run(readings: list[Reading], state: BpState | None = None) -> list[Detection]:
    _, found = detect_bp_crisis("p1", PLAN, state or BpState(), readings)
    return found


def test_single_high_reading_is_confirm_not_emergency() -> None:
    found = run(bp(185, 110, 0))
    assert events(found) == [UNCONFIRMED]
    assert found[0].severity is Severity.LOW
    assert raised(found, Rule.BP_CRISIS_CONFIRMED) == []


def test_high_repeat_confirms() -> None:
    found = run(bp(185, 110, 0) + bp(182, 121, 5))
    assert events(found) == [UNCONFIRMED, (Rule.BP_CRISIS_UNCONFIRMED, DetectionKind.CLEAR), CONFIRMED]
    confirmed = found[2]
    assert confirmed.severity is Severity.CRITICAL
    assert confirmed.detected_at == at(5)
    assert confirmed.episode_start == at(0)
    assert confirmed.evidence["first"]["systolic"] == 185
    assert confirmed.evidence["repeat"]["diastolic"] == 121
    assert found[1].clears == found[0].detection_id


def test_normal_repeat_does_not_confirm() -> None:
    found = run(bp(190, 100, 0) + bp(150, 95, 5))
    assert events(found) == [UNCONFIRMED, (Rule.BP_CRISIS_UNCONFIRMED, DetectionKind.CLEAR)]
    assert found[1].evidence["reason"] == "normal repeat"


def test_diastolic_alone_counts() -> None:
    assert events(run(bp(150, 125, 0) + bp(150, 120, 5))) == [
        UNCONFIRMED,
        (Rule.BP_CRISIS_UNCONFIRMED, DetectionKind.CLEAR),
        CONFIRMED,
    ]


def test_just_below_threshold_is_nothing() -> None:
    assert run(bp(179, 119, 0) + bp(179, 119, 5)) == []


def test_repeat_outside_the_window_is_a_new_first_reading() -> None:
    found = run(bp(185, 100, 0) + bp(185, 100, 45))  # window 30 min
    assert events(found) == [UNCONFIRMED, UNCONFIRMED]
    assert found[0].detection_id != found[1].detection_id


def test_a_repeat_too_soon_does_not_count_but_a_later_one_does() -> None:
    found = run(bp(185, 100, 0) + bp(186, 100, 0.5) + bp(187, 100, 6))
    assert events(found)[-1] == CONFIRMED
    assert found[-1].evidence["repeat"]["systolic"] == 187


def test_confirmed_episode_does_not_reraise_and_clears_on_normal_reading() -> None:
    found = run(bp(185, 100, 0) + bp(185, 100, 5) + bp(190, 100, 10) + bp(140, 85, 60))
    assert events(found) == [
        UNCONFIRMED,
        (Rule.BP_CRISIS_UNCONFIRMED, DetectionKind.CLEAR),
        CONFIRMED,
        (Rule.BP_CRISIS_CONFIRMED, DetectionKind.CLEAR),
    ]


def test_confirmation_across_batches_with_saved_state() -> None:
    state, first = detect_bp_crisis("p1", PLAN, BpState(), bp(185, 100, 0))
    saved = msgspec.json.decode(msgspec.json.encode(state), type=BpState)
    _, second = detect_bp_crisis("p1", PLAN, saved, bp(185, 100, 5))
    assert events(first) == [UNCONFIRMED]
    assert events(second)[-1] == CONFIRMED
    # Replaying the first batch on the saved state raises nothing again.
    assert detect_bp_crisis("p1", PLAN, saved, bp(185, 100, 0))[1] == []


def test_disabled_rule() -> None:
    plan = msgspec.structs.replace(PLAN, bp_crisis=msgspec.structs.replace(PLAN.bp_crisis, enabled=False))
    assert detect_bp_crisis("p1", plan, BpState(), bp(200, 130, 0) + bp(200, 130, 5))[1] == []
