"""NEWS2 over a stream: band escalation, step-down hold, stale and missing parameters."""

from __future__ import annotations

import msgspec

from core.careplan import CarePlan, News2Settings, default_care_plan
from core.rules import Rule, Severity
from core.wire import Reading
from streams.detection.model import Detection, DetectionKind, iso
from streams.detection.news2_monitor import News2State, detect_news2

from .factory import at, events, reading

PLAN = default_care_plan("p1")


def vitals(minute: float, rr: float = 16, spo2: float = 97, hr: float = 70, temp: float = 37.0) -> list[Reading]:
    return [
        reading("resp_rate", rr, minute),
        reading("spo2", spo2, minute),
        reading("heart_rate", hr, minute),
        reading("body_temp", temp, minute),
    ]


def run(readings: list[Reading], plan: CarePlan = PLAN) -> list[Detection]:
    return detect_news2("p1", plan, News2State(), readings)[1]


def test_normal_vitals_raise_nothing() -> None:
    assert run(vitals(0) + vitals(1)) == []


def low_from(first: int, last: int) -> list[Reading]:
    """RR 22 (2) and pulse 95 (1) every minute: aggregate 3, the low band."""
    return [r for m in range(first, last + 1) for r in vitals(m, rr=22, hr=95)]


def test_low_band_with_missing_parameters_reported() -> None:
    found = run(vitals(0) + low_from(1, 16))
    assert events(found) == [(Rule.NEWS2_LOW, DetectionKind.RAISE)]
    evidence = found[0].evidence
    assert evidence["total"] == 3
    assert evidence["scores"] == {"resp_rate": 2, "spo2": 0, "air_or_oxygen": 0, "heart_rate": 1, "body_temp": 0}
    assert evidence["missing"] == ["bp_systolic", "consciousness"]
    assert evidence["complete"] is False
    assert found[0].severity is Severity.LOW
    assert found[0].detected_at == at(16)  # held the plan's 15 minutes
    assert found[0].episode_start == at(1)
    assert evidence["held_since"] == iso(at(1))


def test_a_single_low_band_reading_raises_nothing() -> None:
    # One SpO2 of 95 % (scores 1) among ordinary minutes: wearable noise, not a finding.
    readings = [r for m in range(60) for r in vitals(m, spo2=95 if m == 20 else 97)]
    assert run(readings) == []


def test_the_low_band_must_hold_without_a_break() -> None:
    readings = low_from(0, 10) + vitals(11) + low_from(12, 27)
    found = run(readings)
    assert events(found) == [(Rule.NEWS2_LOW, DetectionKind.RAISE)]
    assert found[0].detected_at == at(27)  # 15 minutes from minute 12, not from minute 0
    assert found[0].episode_start == at(12)


def test_low_band_at_once_when_the_plan_says_so() -> None:
    plan = msgspec.structs.replace(PLAN, news2=News2Settings(low_sustained_s=0))
    assert [d.detected_at for d in run(vitals(0) + low_from(1, 1), plan)] == [at(1)]


def test_escalation_supersedes_the_lower_band() -> None:
    found = run(low_from(0, 15) + vitals(16, rr=22, hr=95, spo2=91))
    assert events(found) == [
        (Rule.NEWS2_LOW, DetectionKind.RAISE),
        (Rule.NEWS2_LOW, DetectionKind.CLEAR),
        (Rule.NEWS2_MEDIUM, DetectionKind.RAISE),
    ]
    assert found[2].severity is Severity.HIGH
    assert found[1].evidence["reason"] == "escalated"
    assert found[2].detected_at == at(16)


def test_a_pending_low_band_that_escalates_raises_the_higher_band_at_once() -> None:
    found = run(low_from(0, 3) + vitals(4, rr=22, hr=95, spo2=91))
    assert events(found) == [(Rule.NEWS2_MEDIUM, DetectionKind.RAISE)]
    assert found[0].detected_at == at(4)


def test_single_parameter_three() -> None:
    found = run(vitals(0, rr=26))
    assert events(found) == [(Rule.NEWS2_SINGLE_PARAMETER, DetectionKind.RAISE)]
    assert found[0].severity is Severity.MEDIUM


def test_high_band_is_critical() -> None:
    found = run(vitals(0, rr=26, spo2=91, hr=115))  # 3 + 3 + 2
    assert [(d.rule, d.severity) for d in found] == [(Rule.NEWS2_HIGH, Severity.CRITICAL)]


def test_wobbling_across_a_band_edge_raises_once() -> None:
    readings: list[Reading] = []
    for minute in range(25):
        readings += vitals(minute, rr=22, spo2=94, hr=95 if minute % 2 else 85)
        readings += [reading("body_temp", 38.2, minute)]  # totals alternate 4 and 5
    found = run(readings)
    assert events(found) == [(Rule.NEWS2_MEDIUM, DetectionKind.RAISE)]
    assert found[0].detected_at == at(1)


def test_step_down_after_the_lower_band_holds() -> None:
    readings = vitals(0, rr=22, spo2=91, hr=95)  # 2 + 3 + 1 = 6: medium
    readings += [r for m in range(1, 40) for r in vitals(m, rr=22, hr=95)]  # 3: low
    found = run(readings)
    assert events(found) == [
        (Rule.NEWS2_MEDIUM, DetectionKind.RAISE),
        (Rule.NEWS2_MEDIUM, DetectionKind.CLEAR),
        (Rule.NEWS2_LOW, DetectionKind.RAISE),
    ]
    assert found[1].detected_at == at(31)  # lower from minute 1, held 30 minutes
    assert found[1].evidence["reason"] == "stepped_down"


def test_stale_parameters_are_not_scored() -> None:
    old_bp = [reading("bp_systolic", 85, 0)]  # scores 3 on its own
    state, first = detect_news2("p1", PLAN, News2State(), old_bp)
    assert events(first) == [(Rule.NEWS2_SINGLE_PARAMETER, DetectionKind.RAISE)]
    # At minute 61 the BP is older than max_age (60 min): not scored, so the score is 0 and,
    # after the 30 min step-down hold, the episode clears.
    _, later = detect_news2("p1", PLAN, state, vitals(61) + vitals(100))
    assert events(later) == [(Rule.NEWS2_SINGLE_PARAMETER, DetectionKind.CLEAR)]
    assert later[0].detected_at == at(100)
    assert "bp_systolic" in later[0].evidence["missing"]
    # A fresh BP of 85 would still score 3.
    _, fresh = detect_news2("p1", PLAN, state, [reading("bp_systolic", 85, 59), *vitals(61), *vitals(100)])
    assert fresh == []


def test_oxygen_and_scale_come_from_the_care_plan() -> None:
    copd = msgspec.structs.replace(PLAN, on_oxygen=True, news2=News2Settings(spo2_scale=2, low_sustained_s=0))
    found = run(vitals(0, spo2=89), copd)
    assert found[0].evidence["scores"]["spo2"] == 0
    assert found[0].evidence["scores"]["air_or_oxygen"] == 2
    assert found[0].evidence["scale"] == 2


def test_replay_after_saved_state_is_silent_and_ids_repeat() -> None:
    batch = vitals(0, rr=26) + vitals(1, rr=26, spo2=91)
    state, first = detect_news2("p1", PLAN, News2State(), batch)
    saved = msgspec.json.decode(msgspec.json.encode(state), type=News2State)
    assert detect_news2("p1", PLAN, saved, batch)[1] == []
    assert [d.detection_id for d in first] == [d.detection_id for d in run(batch)]


def test_disabled() -> None:
    plan = msgspec.structs.replace(PLAN, news2=News2Settings(enabled=False))
    assert run(vitals(0, rr=30), plan) == []
