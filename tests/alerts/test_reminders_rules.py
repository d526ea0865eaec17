"""The reminder rules (alerts/reminders/rules.py): pure, with the clock passed in.

A plan in Europe/Oslo with a blood-pressure check at 08:00 (+/- 1 h) and a dose at 20:00
(+/- 1 h); the times below are UTC (Oslo is UTC+1 in January).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from alerts.reminders import rules
from alerts.reminders.rules import Policy, Preferences, Reminder
from core.careplan import CarePlan, MeasurementSchedule, MedicationSchedule

OSLO = ZoneInfo("Europe/Oslo")
PLAN = CarePlan(
    patient_id="p-rem",
    timezone="Europe/Oslo",
    measurements=(MeasurementSchedule(metric="bp_systolic", times_of_day=(time(8, 0),), tolerance_s=3600),),
    medications=(MedicationSchedule(dose_id="pill-a", times_of_day=(time(20, 0),), window_s=3600),),
)
BOTH = Preferences(channels=("in_app", "email"), email="pat@example.org")


def at(hour: int, minute: int = 0, day: int = 15) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


def bp(planned: list[Reminder]) -> list[Reminder]:
    return [r for r in planned if r.schedule_key == "measurement:bp_systolic"]


def decide(r: Reminder, now: datetime, *, received: bool = False, prefs: Preferences = BOTH) -> rules.Decision:
    return rules.decide(r, received=received, scheduled=True, prefs=prefs, zone=OSLO, now=now)


def test_a_reminder_is_due_at_the_slots_time_once_per_chosen_channel() -> None:
    planned = bp(rules.plan_reminders(PLAN, BOTH, at(6, 30)))
    assert sorted(r.channel for r in planned) == ["email", "in_app"]
    assert {r.due_at for r in planned} == {at(7, 0)}  # 08:00 in Oslo
    assert {r.slot_key for r in planned} == {"2026-01-15T08:00"}
    assert all(r.window_start == at(6) and r.window_end == at(8) for r in planned)
    # Not before the horizon (2 h): at 04:30 UTC the 07:00 UTC slot is still too far ahead.
    assert bp(rules.plan_reminders(PLAN, BOTH, at(4, 30))) == []
    # Planning again gives the same rows (the table stores each once).
    assert bp(rules.plan_reminders(PLAN, BOTH, at(6, 45))) == planned
    # In-app only by default; e-mail never without an address.
    assert [r.channel for r in bp(rules.plan_reminders(PLAN, Preferences(), at(6, 30)))] == ["in_app"]
    no_address = Preferences(channels=("in_app", "email"))
    assert [r.channel for r in bp(rules.plan_reminders(PLAN, no_address, at(6, 30)))] == ["in_app"]
    # Doses too: 20:00 Oslo.
    [dose_app, dose_mail] = [r for r in rules.plan_reminders(PLAN, BOTH, at(18, 30)) if r.kind == "dose"]
    assert dose_app.due_at == at(19)
    assert dose_app.dose_id == "pill-a"
    assert dose_app.metric == "medication_taken"
    assert (dose_app.channel, dose_mail.channel) == ("in_app", "email")


def test_due_and_missing_is_sent_and_a_closed_window_is_skipped() -> None:
    [first, *_] = bp(rules.plan_reminders(PLAN, BOTH, at(6, 30)))
    assert decide(first, at(7)) == rules.Decision("send", "sent")
    assert decide(first, at(8)) == rules.Decision("skip", rules.SKIPPED_WINDOW_CLOSED)
    gone = rules.decide(first, received=False, scheduled=False, prefs=BOTH, zone=OSLO, now=at(7))
    assert gone.outcome == rules.SKIPPED_PLAN_CHANGED
    # A channel the patient turned off since the reminder was planned is not used.
    [app, mail] = bp(rules.plan_reminders(PLAN, BOTH, at(6, 30)))
    app_only = Preferences(channels=("in_app",), email="pat@example.org")
    assert decide(mail, at(7), prefs=app_only).outcome == rules.SKIPPED_CHANNEL_OFF
    assert decide(app, at(7), prefs=app_only).action == "send"


def test_the_reading_arriving_first_cancels_the_reminder() -> None:
    [first, *_] = bp(rules.plan_reminders(PLAN, BOTH, at(6, 30)))
    schedule = rules.schedule_of(PLAN, first.schedule_key)
    assert schedule is not None
    # A reading at 07:40 Oslo (06:40 UTC) falls in the 08:00 slot: the reminder is cancelled.
    reading = at(6, 40)
    assert rules.satisfied(schedule, OSLO, first.slot_key, [reading])
    assert rules.received_for(PLAN, first, [reading]) == (True, True)
    assert decide(first, at(7), received=True) == rules.Decision("cancel", rules.CANCELLED_READING_ARRIVED)
    # One from the day before does not count for today's slot.
    assert not rules.satisfied(schedule, OSLO, first.slot_key, [at(6, 40, day=14)])
    # A dose counts for its own slot only.
    [dose, *_] = [r for r in rules.plan_reminders(PLAN, BOTH, at(18, 30)) if r.kind == "dose"]
    assert rules.received_for(PLAN, dose, [at(19, 10)]) == (True, True)
    assert rules.received_for(PLAN, dose, [at(7, 10)]) == (False, True)


def test_no_reminder_in_quiet_hours_it_waits_for_their_end_or_is_skipped() -> None:
    # Quiet 22:00-08:30 Oslo (wraps midnight): the 08:00 reminder waits until 08:30 Oslo,
    # 07:30 UTC, which is still inside the window (it ends at 09:00 Oslo).
    quiet = Preferences(
        channels=("in_app", "email"), email="pat@example.org", quiet_start=time(22), quiet_end=time(8, 30)
    )
    [first, *_] = bp(rules.plan_reminders(PLAN, quiet, at(6, 30)))
    assert decide(first, at(7), prefs=quiet) == rules.Decision("defer", until=at(7, 30))
    assert decide(first, at(7, 30), prefs=quiet).action == "send"
    # Quiet until 09:30: the window has closed by then, so nothing is sent.
    late = Preferences(channels=("in_app",), quiet_start=time(22), quiet_end=time(9, 30))
    assert decide(first, at(7), prefs=late) == rules.Decision("skip", rules.SKIPPED_QUIET_HOURS)
    # Quiet hours in the patient's own zone (UTC here): 06:00-07:30 UTC covers 07:00 UTC.
    utc_quiet = Preferences(quiet_start=time(6), quiet_end=time(7, 30), time_zone="UTC")
    got = rules.decide(first, received=False, scheduled=True, prefs=utc_quiet, zone=UTC_ZONE, now=at(7))
    assert got == rules.Decision("defer", until=at(7, 30))
    # Outside quiet hours nothing changes; equal start and end means none.
    assert rules.quiet_until(quiet, OSLO, at(12)) is None
    assert rules.quiet_until(Preferences(quiet_start=time(8), quiet_end=time(8)), OSLO, at(7)) is None
    # Before midnight the quiet hours end the next morning.
    assert rules.quiet_until(quiet, OSLO, at(22)) == at(7, 30, day=16)


UTC_ZONE = ZoneInfo("UTC")


def test_one_follow_up_at_most_and_none_when_the_window_is_too_short() -> None:
    [first, *_] = bp(rules.plan_reminders(PLAN, BOTH, at(6, 30)))
    follow = rules.follow_up_of(first, at(7))
    assert follow is not None
    assert follow.follow_up
    assert follow.due_at == at(7, 30)
    assert (follow.slot_key, follow.channel) == (first.slot_key, first.channel)
    assert rules.follow_up_of(follow, at(7, 30)) is None  # a follow-up has no follow-up of its own
    # It is cancelled like the first when the reading came in between.
    assert decide(follow, at(7, 30), received=True).outcome == rules.CANCELLED_READING_ARRIVED
    # Sent late (after quiet hours): no sooner than 15 min after, no later than 15 min before the end.
    late = rules.follow_up_of(first, at(7, 25))
    assert late is not None
    assert late.due_at == at(7, 40)
    assert rules.follow_up_of(first, at(7, 30)) is not None  # 07:45, the last minute allowed
    assert rules.follow_up_of(first, at(7, 31)) is None
    # A 10-minute window has no room for one.
    short = CarePlan(
        patient_id="p-rem",
        measurements=(MeasurementSchedule(metric="spo2", times_of_day=(time(9),), tolerance_s=600),),
    )
    [only] = rules.plan_reminders(short, Preferences(), at(8, 30))
    assert rules.follow_up_of(only, at(9)) is None
    assert (
        rules.follow_up_of(only, at(9), Policy(follow_up_gap=timedelta(minutes=1), follow_up_margin=timedelta()))
        is not None
    )


def test_a_count_per_day_is_reminded_at_the_daily_time_and_filled_by_enough_readings() -> None:
    plan = CarePlan(
        patient_id="p-rem",
        timezone="Europe/Oslo",
        measurements=(MeasurementSchedule(metric="body_weight", times_per_day=2),),
    )
    [r] = rules.plan_reminders(plan, Preferences(), at(16, 30))
    assert r.slot_key == "2026-01-15"
    assert r.due_at == at(17)
    assert r.window_end == at(23)  # midnight in Oslo
    assert rules.received_for(plan, r, [at(7)]) == (False, True)
    assert rules.received_for(plan, r, [at(7), at(9)]) == (True, True)
    assert rules.plan_reminders(plan, Preferences(), at(16, 30), Policy(daily_at=time(20))) == []  # beyond the horizon


def test_slots_before_the_plans_start_are_left_alone_and_outcomes_after_the_window() -> None:
    later = CarePlan(
        patient_id="p-rem",
        timezone="Europe/Oslo",
        effective_from=at(6, 30),
        measurements=PLAN.measurements,
    )
    assert rules.plan_reminders(later, BOTH, at(6, 30)) == []  # the 08:00 window opened before the plan
    assert rules.window_outcome(True) == rules.READING_AFTER
    assert rules.window_outcome(False) == rules.NO_READING
