"""NEWS2 over a stream: band escalation, step-down hold, stale and missing parameters."""

from __future__ import annotations

import msgspec

from core.careplan import CarePlan, News2Settings, default_care_plan
from core.catalogue import ACVPU_CODES, AcvpuLevel
from core.detectors.model import Detection, DetectionKind, iso
from core.detectors.rules.news2_monitor import News2State, detect_news2
from core.rules import Rule, Severity
from core.wire import Reading

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
        # RR 22 (2), SpO2 94 (1), temperature 38.2 (1), pulse 95 (1) or 85 (0): 5 and 4
        readings += vitals(minute, rr=22, spo2=94, hr=95 if minute % 2 else 85, temp=38.2)
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


# --- arrival order (issue 10, ADR 0015) ------------------------------------------------------
# A wearable scoring 4 (RR 22: 2, SpO2 95: 1, pulse 95: 1), the low band, held 15 minutes
# before it raises; a cuff's systolic 90 scores 3 more: 7, the high band.
def wearable(first: int, last: int) -> list[Reading]:
    return [r for m in range(first, last + 1) for r in vitals(m, rr=22, spo2=95, hr=95)]


def cuff(minute: float, systolic: float = 90) -> list[Reading]:
    return [reading("bp_systolic", systolic, minute), reading("bp_diastolic", 60, minute)]


def in_batches(*batches: list[Reading], plan: CarePlan = PLAN) -> tuple[News2State, list[Detection]]:
    """Each batch after the one before, with the state saved (encoded and decoded) between."""
    state, found = News2State(), list[Detection]()
    for b in batches:
        state, more = detect_news2("p1", plan, state, b)
        state = msgspec.json.decode(msgspec.json.encode(state), type=News2State)
        found += more
    return state, found


def test_a_cuff_reading_arriving_after_newer_wearable_readings_is_scored_at_once() -> None:
    _, found = in_batches(wearable(0, 10), cuff(5))
    assert events(found) == [(Rule.NEWS2_HIGH, DetectionKind.RAISE)]
    high = found[0]
    assert high.severity is Severity.CRITICAL
    assert high.detected_at == at(10)  # when it arrived, the newest time scored: not 15 min later
    assert high.evidence["total"] == 7
    assert high.evidence["scores"]["bp_systolic"] == 3
    assert high.evidence["values"]["bp_systolic"] == {"value": 90, "ts": iso(at(5))}
    assert high.evidence["late"] == ["bp_systolic"]
    assert high.evidence["reason"] == "escalated"


def test_the_same_timestamp_arriving_later_is_scored() -> None:
    _, found = in_batches(wearable(0, 3), cuff(3))
    assert [(d.rule, d.detected_at, d.evidence["total"]) for d in found] == [(Rule.NEWS2_HIGH, at(3), 7)]


def test_out_of_order_within_a_batch_is_the_same_as_in_order() -> None:
    in_order = wearable(0, 4) + cuff(5) + wearable(5, 10)
    shuffled = wearable(0, 10) + cuff(5)
    shuffled.reverse()
    expected = run(in_order)
    assert events(expected) == [(Rule.NEWS2_HIGH, DetectionKind.RAISE)]
    assert expected[0].detected_at == at(5)
    assert run(shuffled) == expected


def test_a_late_reading_escalates_an_open_episode() -> None:
    _, found = in_batches(wearable(0, 20), cuff(18))
    assert events(found) == [
        (Rule.NEWS2_LOW, DetectionKind.RAISE),  # held 15 minutes: at minute 15
        (Rule.NEWS2_LOW, DetectionKind.CLEAR),
        (Rule.NEWS2_HIGH, DetectionKind.RAISE),
    ]
    assert found[0].detected_at == at(15)
    assert [d.detected_at for d in found[1:]] == [at(20), at(20)]
    assert found[1].clears == found[0].detection_id


def test_a_late_reading_older_than_the_one_kept_changes_nothing() -> None:
    _, found = in_batches(cuff(8, systolic=120) + wearable(0, 10), cuff(5))
    assert found == []  # the newer cuff reading (120: 0) is the one that counts


def test_a_late_reading_outside_its_window_changes_nothing() -> None:
    normal = [r for m in [*range(11), 70, 71, 72] for r in vitals(m)]
    _, found = in_batches(normal, cuff(5))
    assert found == []  # 90 alone scores 3, but taken 67 min before the newest time (max_age 60)
    assert events(run(normal[:-12] + cuff(5))) == [(Rule.NEWS2_SINGLE_PARAMETER, DetectionKind.RAISE)]


def test_a_late_reading_that_lowers_the_score_starts_the_step_down_hold() -> None:
    # Cuff 90 at minute 0 (high with the wearable), then a newer cuff of 130 arriving late.
    state, found = in_batches(cuff(0) + wearable(0, 10), cuff(9, systolic=130), wearable(11, 40))
    assert events(found) == [
        (Rule.NEWS2_HIGH, DetectionKind.RAISE),
        (Rule.NEWS2_HIGH, DetectionKind.CLEAR),
        (Rule.NEWS2_LOW, DetectionKind.RAISE),
    ]
    assert found[1].detected_at == at(40)  # lower from minute 10 (scored when it arrived), 30 min
    assert state.open is not None
    assert state.open.rule is Rule.NEWS2_LOW


def test_a_late_batch_replayed_after_its_state_was_saved_is_silent_and_ids_repeat() -> None:
    state, first = in_batches(wearable(0, 10), cuff(5))
    assert detect_news2("p1", PLAN, state, cuff(5))[1] == []
    assert detect_news2("p1", PLAN, state, wearable(0, 10) + cuff(5))[1] == []
    _, again = in_batches(wearable(0, 10), cuff(5))
    assert [d.detection_id for d in again] == [d.detection_id for d in first]


def test_the_first_of_two_readings_with_the_same_metric_and_time_is_kept_as_storage_keeps_it() -> None:
    _, found = in_batches(wearable(0, 3) + cuff(3), cuff(3, systolic=130))
    assert [(d.rule, d.evidence["values"]["bp_systolic"]["value"]) for d in found] == [(Rule.NEWS2_HIGH, 90)]


# --- consciousness (ACVPU) -------------------------------------------------------------------
def consciousness(level: AcvpuLevel, minute: float) -> Reading:
    return reading("consciousness", ACVPU_CODES[level], minute)


def test_new_confusion_adds_three() -> None:
    _, found = in_batches(wearable(0, 3), [consciousness("C", 4), *wearable(4, 4)])
    assert [(d.rule, d.detected_at) for d in found] == [(Rule.NEWS2_HIGH, at(4))]
    evidence = found[0].evidence
    assert evidence["total"] == 7
    assert evidence["scores"]["consciousness"] == 3
    assert evidence["consciousness"] == "C"
    assert evidence["values"]["consciousness"] == {"value": "C", "ts": iso(at(4))}
    assert "consciousness" not in evidence["missing"]


def test_a_single_three_from_consciousness_alone() -> None:
    found = run([*vitals(0), consciousness("V", 0)])
    assert [(d.rule, d.evidence["total"], d.evidence["consciousness"]) for d in found] == [
        (Rule.NEWS2_SINGLE_PARAMETER, 3, "V")
    ]


def test_alert_scores_zero_and_is_reported() -> None:
    found = run([*vitals(0, rr=26), consciousness("A", 0)])
    assert found[0].evidence["scores"]["consciousness"] == 0
    assert found[0].evidence["consciousness"] == "A"
    assert found[0].evidence["complete"] is False  # systolic BP still missing


def test_without_consciousness_the_evidence_says_not_reported() -> None:
    found = run(vitals(0, rr=26))
    assert found[0].evidence["consciousness"] == "not reported"
    assert "consciousness" in found[0].evidence["missing"]
    assert "consciousness" not in found[0].evidence["scores"]


def test_consciousness_counts_for_the_plans_window_only() -> None:
    # Confusion at minute 0; at minute 61 it is older than max_age: not reported, not scored.
    _, found = in_batches([*vitals(0), consciousness("C", 0)], vitals(61) + vitals(100))
    assert events(found) == [
        (Rule.NEWS2_SINGLE_PARAMETER, DetectionKind.RAISE),
        (Rule.NEWS2_SINGLE_PARAMETER, DetectionKind.CLEAR),
    ]
    assert found[1].evidence["consciousness"] == "not reported"


def test_a_late_confusion_check_in_escalates_at_once() -> None:
    _, found = in_batches(wearable(0, 10), [consciousness("C", 7)])
    assert [(d.rule, d.detected_at, d.evidence["late"]) for d in found] == [
        (Rule.NEWS2_HIGH, at(10), ["consciousness"])
    ]
