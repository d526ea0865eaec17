"""Adherence: missed measurements and doses per care-plan schedule, judged at `now`."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import msgspec

from core.careplan import CarePlan, MeasurementSchedule, MedicationSchedule, default_care_plan
from core.detectors.model import Detection, DetectionKind
from core.detectors.rules.adherence import AdherenceState, adherence_over, evaluate_adherence, observe_adherence
from core.rules import Rule, Severity
from core.wire import Reading

from .factory import T0, events

DAY0 = datetime(2026, 1, 5, tzinfo=UTC)  # T0 is 06:00 on this day


def clock(hours: float, day: int = 0) -> datetime:
    return DAY0 + timedelta(days=day, hours=hours)


def plan_with(**changes: object) -> CarePlan:
    return msgspec.structs.replace(default_care_plan("p1"), **{"effective_from": T0, **changes})


BP_TWICE = plan_with(
    measurements=(MeasurementSchedule(metric="bp_systolic", times_of_day=(time(8), time(20)), tolerance_s=3600),)
)
METFORMIN = plan_with(medications=(MedicationSchedule(dose_id="metformin-am", times_of_day=(time(8),)),))


def observe(plan: CarePlan, state: AdherenceState, *readings: Reading) -> tuple[AdherenceState, list[Detection]]:
    return observe_adherence("p1", plan, state, list(readings))


def evaluate(plan: CarePlan, state: AdherenceState, now: datetime) -> tuple[AdherenceState, list[Detection]]:
    return evaluate_adherence("p1", plan, state, now)


def test_missed_measurement_is_reported_after_its_window_and_grace() -> None:
    state, _ = observe(BP_TWICE, AdherenceState(), Reading("bp_systolic", 130, clock(8.5)))
    state, early = evaluate(BP_TWICE, state, clock(21, 0) + timedelta(minutes=4))  # grace is 5 min
    assert early == []
    state, found = evaluate(BP_TWICE, state, clock(21) + timedelta(minutes=5))
    assert events(found) == [(Rule.MEASUREMENT_MISSED, DetectionKind.RAISE)]
    missed = found[0]
    assert missed.detected_at == clock(21)  # end of the 20:00 +/- 1 h window
    assert missed.severity is Severity.LOW
    assert missed.evidence["slot"] == "2026-01-05T20:00"
    assert missed.evidence["metric"] == "bp_systolic"
    # Evaluating again reports nothing twice.
    assert evaluate(BP_TWICE, state, clock(23))[1] == []


def test_reading_outside_the_window_does_not_count() -> None:
    state, _ = observe(BP_TWICE, AdherenceState(), Reading("bp_systolic", 130, clock(9.5)))
    _, found = evaluate(BP_TWICE, state, clock(9.2))
    assert [d.evidence["slot"] for d in found] == ["2026-01-05T08:00"]


def test_window_edges_are_inclusive() -> None:
    state, _ = observe(
        BP_TWICE, AdherenceState(), Reading("bp_systolic", 130, clock(7)), Reading("bp_systolic", 130, clock(21))
    )
    assert evaluate(BP_TWICE, state, clock(22))[1] == []


def test_same_evaluation_twice_gives_same_ids() -> None:
    first = evaluate(BP_TWICE, AdherenceState(), clock(12, day=1))[1]
    second = evaluate(BP_TWICE, AdherenceState(), clock(12, day=1))[1]
    assert [d.evidence["slot"] for d in first] == ["2026-01-05T08:00", "2026-01-05T20:00", "2026-01-06T08:00"]
    assert [d.detection_id for d in first] == [d.detection_id for d in second]


def test_late_reading_clears_the_missed_slot() -> None:
    state, found = evaluate(BP_TWICE, AdherenceState(), clock(21.5))
    state, late = observe(BP_TWICE, state, Reading("bp_systolic", 130, clock(20.6)))
    assert events(late) == [(Rule.MEASUREMENT_MISSED, DetectionKind.CLEAR)]
    assert late[0].clears == found[-1].detection_id
    # Replaying the late reading clears nothing twice.
    assert observe(BP_TWICE, state, Reading("bp_systolic", 130, clock(20.6)))[1] == []


def test_slots_before_the_plan_took_effect_are_not_judged() -> None:
    plan = msgspec.structs.replace(BP_TWICE, effective_from=clock(7.5))
    _, found = evaluate(plan, AdherenceState(), clock(22))
    assert [d.evidence["slot"] for d in found] == ["2026-01-05T20:00"]


def test_without_effective_from_monitoring_starts_at_the_first_evaluation() -> None:
    plan = msgspec.structs.replace(BP_TWICE, effective_from=None)
    state, found = evaluate(plan, AdherenceState(), clock(22))
    assert found == []
    _, found = evaluate(plan, state, clock(10, day=1))
    assert [d.evidence["slot"] for d in found] == ["2026-01-06T08:00"]


def test_times_per_day_counts_distinct_readings_in_the_local_day() -> None:
    plan = plan_with(
        effective_from=DAY0,
        measurements=(MeasurementSchedule(metric="glucose", times_per_day=2),),
    )
    one = Reading("glucose", 100, clock(9))
    state, _ = observe(plan, AdherenceState(), one, one)  # the same reading twice counts once
    _, found = evaluate(plan, state, clock(0.2, day=1))
    assert events(found) == [(Rule.MEASUREMENT_MISSED, DetectionKind.RAISE)]
    assert (found[0].evidence["received"], found[0].evidence["required"]) == (1, 2)
    state, _ = observe(plan, state, Reading("glucose", 110, clock(19)))
    assert evaluate(plan, state, clock(0.2, day=1))[1] == []


def test_missed_dose() -> None:
    taken = Reading("medication_taken", 1, clock(8.3), dose_id="metformin-am")
    other = Reading("medication_taken", 1, clock(8, day=1), dose_id="lisinopril")
    state, _ = observe(METFORMIN, AdherenceState(), taken, other)
    _, found = evaluate(METFORMIN, state, clock(12, day=1))
    assert events(found) == [(Rule.DOSE_MISSED, DetectionKind.RAISE)]
    assert found[0].detected_at == clock(9, day=1)
    assert found[0].evidence["dose_id"] == "metformin-am"
    assert found[0].severity is Severity.MEDIUM


def test_schedule_times_are_local_to_the_plan_time_zone() -> None:
    plan = msgspec.structs.replace(METFORMIN, timezone="America/New_York")  # UTC-5 in January
    _, found = evaluate(plan, AdherenceState(), clock(15))
    assert [d.detected_at for d in found] == [clock(14)]  # 08:00 local + 1 h = 14:00 UTC


def test_state_is_pruned_and_serialisable() -> None:
    state = AdherenceState()
    for day in range(20):
        state, _ = observe(BP_TWICE, state, Reading("bp_systolic", 130, clock(8, day=day)))
        state, _ = evaluate(BP_TWICE, state, clock(23, day=day))
    slots = state.schedules["measurement:bp_systolic"]
    assert len(slots.seen) <= 6
    assert len(slots.missed) <= 6
    assert msgspec.json.decode(msgspec.json.encode(state), type=AdherenceState) == state


def test_no_schedule_no_detections() -> None:
    plan = default_care_plan("p1")
    state, found = evaluate(plan, AdherenceState(), clock(12, day=3))
    assert found == []
    assert observe(plan, state, Reading("bp_systolic", 120, clock(8)))[1] == []


def test_adherence_over_a_window_counts_closed_slots_and_the_readings_that_kept_them() -> None:
    # T0 = day 0 06:00; BP at 08:00 and 20:00 (+/- 1 h) from then on. Over day 0 06:00 to day 2
    # 12:00 the closed slots are day 0 08:00, 20:00, day 1 08:00, 20:00, day 2 08:00 (day 2's
    # 20:00 window has not closed). Readings: day 0 08:30 and 08:45 (one slot, counted once),
    # day 1 19:10, and day 1 12:00 (outside every window).
    readings = [
        Reading("bp_systolic", 130, clock(8.5)),
        Reading("bp_systolic", 131, clock(8.75)),
        Reading("bp_systolic", 128, clock(19 + 1 / 6, day=1)),
        Reading("bp_systolic", 129, clock(12, day=1)),
        Reading("heart_rate", 70, clock(8, day=2)),  # not this schedule's metric
    ]
    [bp] = adherence_over(BP_TWICE, readings, T0, clock(12, day=2))
    assert (bp.key, bp.kind, bp.expected, bp.met) == ("measurement:bp_systolic", "measurement", 5, 2)
    # Not before the plan took effect: a window from the day before counts from T0 only.
    [same] = adherence_over(BP_TWICE, readings, T0 - timedelta(days=1), clock(12, day=2))
    assert (same.expected, same.met) == (5, 2)
    # A dose schedule in the plan's own time zone: 08:00 in New York is 13:00 UTC in January.
    ny = plan_with(
        timezone="America/New_York",
        medications=(MedicationSchedule(dose_id="metformin-am", times_of_day=(time(8),), window_s=1800),),
    )
    taken = [Reading("medication_taken", 1, clock(13.25), dose_id="metformin-am")]
    [dose] = adherence_over(ny, taken, T0, clock(23, day=1))
    assert (dose.kind, dose.dose_id, dose.expected, dose.met) == ("dose", "metformin-am", 2, 1)
    # A plan without schedules has no figures.
    assert adherence_over(plan_with(), readings, T0, clock(12, day=2)) == []
