"""The alert lifecycle (core/alert_lifecycle.py): every transition, illegal moves, escalation
timing, quiet hours against a critical alert, snooze scope and precision, with a fixed clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import pytest

from core.alert_lifecycle import (
    DEFAULT_TIERS,
    Alert,
    Detection,
    Tier,
    TransitionError,
    acknowledge,
    add_note,
    alerts_per_patient_day,
    assign,
    clear,
    escalate,
    escalation_due,
    expire_snooze,
    open_alert,
    precision,
    quiet_hours_delay,
    resolve,
    retrigger,
    snooze,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TIERS = (Tier(0, 0, "low"), Tier(1, 60, "low"), Tier(2, 300, "high"))
NURSE = "00000000-0000-0000-0000-000000000001"


def det(
    did: str = "d1", *, severity: str = "high", kind: str = "raise", rule: str = "spo2_low", clears: str | None = None
) -> Detection:
    return Detection(
        detection_id=did,
        patient_id="p1",
        rule=rule,
        severity=severity,
        kind=kind,  # type: ignore[arg-type]
        detected_at=T0,
        evidence={"value": 88},
        clears=clears,
    )


def opened(severity: str = "high", tiers: tuple[Tier, ...] = TIERS) -> Alert:
    return open_alert("a1", det(severity=severity), tiers, T0).alert


# --- opening, re-trigger, clear --------------------------------------------------------------
def test_a_raise_opens_an_alert_that_notifies_tier_0_and_schedules_tier_1() -> None:
    t = open_alert("a1", det(), TIERS, T0)
    a = t.alert
    assert (a.state, a.severity, a.repeat_count, a.escalation_tier) == ("open", "high", 1, 0)
    assert a.detection_ids == ("d1",)
    assert a.next_escalation_at == T0 + timedelta(seconds=60)
    assert t.notify_tier == 0
    assert [e.kind for e in t.events] == ["opened"]
    assert t.events[0].actor_id is None
    assert t.events[0].detail["detection_id"] == "d1"


def test_a_tier_0_above_the_severity_notifies_nobody_on_opening() -> None:
    t = open_alert("a1", det(severity="low"), (Tier(0, 0, "high"), Tier(1, 60, "low")), T0)
    assert t.notify_tier is None
    assert t.alert.next_escalation_at == T0 + timedelta(seconds=60)


def test_a_clear_cannot_open_an_alert() -> None:
    with pytest.raises(TransitionError):
        open_alert("a1", det(kind="clear"), TIERS, T0)


def test_retrigger_counts_repeats_and_keeps_the_higher_severity() -> None:
    a = opened("medium")
    a = retrigger(a, det("d2", severity="high"), TIERS, T0 + timedelta(seconds=5)).alert
    t = retrigger(a, det("d3", severity="low"), TIERS, T0 + timedelta(seconds=9))
    assert (t.alert.repeat_count, t.alert.severity, t.alert.state) == (3, "high", "open")
    assert t.alert.detection_ids == ("d1", "d2", "d3")
    assert [e.kind for e in t.events] == ["retriggered"]
    assert t.notify_tier is None  # a repeat is not a new notification


def test_a_resolved_alert_is_not_retriggered() -> None:
    a = resolve(opened(), "actionable", None, NURSE, T0).alert
    with pytest.raises(TransitionError, match="new alert"):
        retrigger(a, det("d2"), TIERS, T0)


def test_clear_resolves_self_resolved_and_cancels_queued() -> None:
    t = clear(opened(), det("c1", kind="clear", clears="d1"), T0 + timedelta(minutes=3))
    a = t.alert
    assert (a.state, a.disposition, a.resolved_by, a.next_escalation_at) == ("resolved", "self_resolved", None, None)
    assert t.cancel_queued
    assert t.events[0].kind == "resolved"
    assert t.events[0].detail["disposition"] == "self_resolved"


def test_a_clear_of_another_episode_or_a_resolved_alert_is_refused() -> None:
    with pytest.raises(TransitionError, match="another episode"):
        clear(opened(), det("c1", kind="clear", clears="other"), T0)
    done = resolve(opened(), "duplicate", None, NURSE, T0).alert
    with pytest.raises(TransitionError, match="already resolved"):
        clear(done, det("c1", kind="clear", clears="d1"), T0)


# --- a person's moves --------------------------------------------------------------------------
def test_acknowledge_stops_escalation_and_cancels_queued() -> None:
    t = acknowledge(opened(), NURSE, T0 + timedelta(seconds=10))
    assert (t.alert.state, t.alert.acknowledged_by, t.alert.next_escalation_at) == ("acknowledged", NURSE, None)
    assert t.cancel_queued
    assert t.events[0].actor_id == NURSE
    assert not escalation_due(t.alert, T0 + timedelta(hours=1))


@pytest.mark.parametrize("state", ["acknowledged", "resolved"])
def test_acknowledge_twice_or_after_resolution_is_a_conflict(state: str) -> None:
    a = acknowledge(opened(), NURSE, T0).alert
    if state == "resolved":
        a = resolve(a, "actionable", None, NURSE, T0).alert
    with pytest.raises(TransitionError):
        acknowledge(a, NURSE, T0)


def test_resolve_needs_a_person_disposition_and_a_note_for_other() -> None:
    a = opened()
    with pytest.raises(TransitionError, match="self_resolved"):
        resolve(a, "self_resolved", None, NURSE, T0)
    with pytest.raises(TransitionError, match="unknown"):
        resolve(a, "fixed", None, NURSE, T0)
    with pytest.raises(TransitionError, match="needs a note"):
        resolve(a, "other", "  ", NURSE, T0)
    with pytest.raises(TransitionError, match="longer"):
        resolve(a, "other", "x" * 2001, NURSE, T0)
    t = resolve(a, "other", "patient was exercising", NURSE, T0)
    assert (t.alert.state, t.alert.disposition, t.alert.resolution_note) == (
        "resolved",
        "other",
        "patient was exercising",
    )
    assert t.cancel_queued
    assert t.events[0].actor_id == NURSE


def test_resolve_from_every_unresolved_state() -> None:
    a = opened()
    for start in (a, acknowledge(a, NURSE, T0).alert, snooze(a, T0 + timedelta(hours=1), T0).alert):
        assert resolve(start, "not_actionable", None, NURSE, T0).alert.state == "resolved"
    with pytest.raises(TransitionError):
        resolve(resolve(a, "actionable", None, NURSE, T0).alert, "actionable", None, NURSE, T0)


def test_assign_and_notes() -> None:
    t = assign(opened(), NURSE, NURSE, T0)
    assert t.alert.assigned_to == NURSE
    assert t.events[0].kind == "assigned"
    with pytest.raises(TransitionError):
        assign(t.alert, NURSE, NURSE, T0)
    n = add_note(t.alert, "called the patient", NURSE, T0)
    assert n.events[0].kind == "note"
    assert n.events[0].note == "called the patient"
    with pytest.raises(TransitionError):
        add_note(t.alert, " ", NURSE, T0)


def test_snooze_and_its_expiry() -> None:
    a = opened()
    with pytest.raises(TransitionError, match="future"):
        snooze(a, T0, T0)
    with pytest.raises(TransitionError, match="24 hours"):
        snooze(a, T0 + timedelta(hours=25), T0)
    t = snooze(a, T0 + timedelta(minutes=30), T0, NURSE)
    assert (t.alert.state, t.alert.next_escalation_at) == ("snoozed", None)
    assert t.cancel_queued
    assert not escalation_due(t.alert, T0 + timedelta(hours=2))
    with pytest.raises(TransitionError, match="not ended"):
        expire_snooze(t.alert, TIERS, T0 + timedelta(minutes=29))
    later = T0 + timedelta(minutes=30)
    u = expire_snooze(t.alert, TIERS, later)
    assert (u.alert.state, u.alert.snoozed_until) == ("open", None)
    assert u.events[0].kind == "unsnoozed"
    # escalation starts again from tier 0: the next tier comes its 60 s after the snooze ended
    assert u.alert.next_escalation_at == later + timedelta(seconds=60)
    with pytest.raises(TransitionError):
        expire_snooze(u.alert, TIERS, later)


def test_snooze_scope_a_higher_severity_retrigger_ends_it_a_lower_one_does_not() -> None:
    s = snooze(opened("medium"), T0 + timedelta(hours=1), T0).alert
    same = retrigger(s, det("d2", severity="medium"), TIERS, T0 + timedelta(minutes=1))
    assert same.alert.state == "snoozed"
    assert [e.kind for e in same.events] == ["retriggered"]
    higher = retrigger(s, det("d3", severity="critical"), TIERS, T0 + timedelta(minutes=1))
    assert (higher.alert.state, higher.alert.severity) == ("open", "critical")
    assert [e.kind for e in higher.events] == ["retriggered", "unsnoozed"]
    assert higher.alert.next_escalation_at is not None


def test_a_snooze_is_one_alerts_another_rule_opens_and_notifies_as_usual() -> None:
    # The snoozed spo2_low alert does not enter the lifecycle of news2_high: that one opens with
    # its own tier-0 notification.
    snoozed = snooze(opened("medium"), T0 + timedelta(hours=1), T0).alert
    other = open_alert("a2", det("n1", severity="critical", rule="news2_high"), TIERS, T0 + timedelta(minutes=1))
    assert snoozed.state == "snoozed"
    assert (other.alert.state, other.notify_tier) == ("open", 0)


# --- escalation ----------------------------------------------------------------------------------
def test_escalation_follows_the_tiers_by_severity_and_stops_at_the_last() -> None:
    a = opened("high")
    assert not escalation_due(a, T0 + timedelta(seconds=59))
    with pytest.raises(TransitionError):
        escalate(a, TIERS, T0 + timedelta(seconds=59))
    e1 = escalate(a, TIERS, T0 + timedelta(seconds=60))
    assert (e1.alert.escalation_tier, e1.notify_tier, e1.alert.next_escalation_at) == (
        1,
        1,
        T0 + timedelta(seconds=300),
    )
    assert e1.events[0].kind == "escalated"
    assert e1.events[0].detail["tier"] == 1
    e2 = escalate(e1.alert, TIERS, T0 + timedelta(seconds=300))
    assert (e2.alert.escalation_tier, e2.notify_tier, e2.alert.next_escalation_at) == (2, 2, None)
    assert not escalation_due(e2.alert, T0 + timedelta(days=1))


def test_a_tier_above_the_severity_is_skipped() -> None:
    a = opened("medium")
    e1 = escalate(a, TIERS, T0 + timedelta(seconds=60))
    assert e1.alert.escalation_tier == 1
    assert e1.alert.next_escalation_at is None


def test_an_overdue_tier_fires_at_the_next_tick() -> None:
    a = opened("high")
    late = T0 + timedelta(hours=1)
    e1 = escalate(a, TIERS, late)
    assert e1.alert.next_escalation_at == late


def test_acknowledged_alert_never_escalates() -> None:
    a = acknowledge(opened(), NURSE, T0).alert
    with pytest.raises(TransitionError):
        escalate(replace(a, next_escalation_at=T0), TIERS, T0 + timedelta(hours=1))


def test_default_tiers_are_immediate_then_15_and_30_minutes() -> None:
    t = open_alert("a1", det(severity="info"), DEFAULT_TIERS, T0)
    assert t.notify_tier == 0
    assert t.alert.next_escalation_at == T0 + timedelta(minutes=15)
    e = escalate(t.alert, DEFAULT_TIERS, T0 + timedelta(minutes=15))
    assert e.alert.next_escalation_at == T0 + timedelta(minutes=30)


# --- quiet hours ---------------------------------------------------------------------------------
def test_quiet_hours_delay_until_their_end_in_the_clinicians_zone() -> None:
    night = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)  # 00:30 in Berlin (CET)
    due = quiet_hours_delay("high", night, time(22, 0), time(7, 0), "Europe/Berlin")
    assert due == datetime(2026, 3, 3, 6, 0, tzinfo=UTC)  # 07:00 CET
    evening = datetime(2026, 3, 2, 21, 30, tzinfo=UTC)  # 22:30 CET, before midnight
    assert quiet_hours_delay("low", evening, time(22, 0), time(7, 0), "Europe/Berlin") == due


def test_critical_is_never_delayed_and_outside_quiet_hours_is_now() -> None:
    night = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)
    assert quiet_hours_delay("critical", night, time(22, 0), time(7, 0), "Europe/Berlin") == night
    noon = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert quiet_hours_delay("high", noon, time(22, 0), time(7, 0), "Europe/Berlin") == noon
    assert quiet_hours_delay("high", noon, None, None) == noon
    # hours within one day
    assert quiet_hours_delay("medium", noon, time(11, 0), time(13, 30)) == datetime(2026, 3, 2, 13, 30, tzinfo=UTC)
    assert quiet_hours_delay("medium", noon, time(12, 0), time(12, 0)) == noon


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        quiet_hours_delay("high", datetime(2026, 3, 2, 12, 0), None, None)  # noqa: DTZ001


# --- figures -------------------------------------------------------------------------------------
def test_precision_is_actionable_over_resolved_by_a_person() -> None:
    assert precision([]) is None
    assert precision(["self_resolved", None]) is None
    assert precision(["actionable", "not_actionable", "false_reading", "self_resolved", None, "actionable"]) == 0.5
    assert precision(["duplicate", "other"]) == 0.0


def test_alerts_per_patient_day() -> None:
    assert alerts_per_patient_day(30, 10, 3.0) == 1.0
    assert alerts_per_patient_day(3, 0, 1.0) is None
