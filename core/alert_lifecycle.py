"""The alert lifecycle (ARCHITECTURE.md §6, ADR 0018): pure functions over plain data.

Shared by the alert service (detections → alerts, escalation and snooze timers) and the API
(a clinician acknowledges, assigns, snoozes, resolves). Nothing here does I/O or reads a
clock: every function takes `now`. Each transition returns a `Transition`: the new alert value,
the history rows to write (`alert_events.kind` values of migration 0006) and whether the
notifications still queued for the alert must be cancelled (`CANCEL_QUEUED_SQL`). An illegal
move raises `TransitionError`, whose message is meant for a 409 answer.

States: open → acknowledged → resolved, plus snoozed (until a time, per alert). Any state but
resolved may be resolved. Escalation runs only while an alert is `open`: acknowledging,
snoozing or resolving stops it (`next_escalation_at` None) and cancels what is queued on every
channel. A snooze is one alert's: another rule of the same patient, of any severity, opens and
notifies as usual; a re-trigger of the snoozed alert itself at a higher severity ends the snooze.

Who is told and when (severity order, escalation tiers, quiet hours) is `core.alert_escalation`;
its names are re-exported here for the callers of the lifecycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from core.alert_escalation import (
    DEFAULT_TIERS,
    Tier,
    applies,
    max_severity,
    next_tier,
    quiet_hours_delay,
    require_aware,
    severity_rank,
    tiers_or_default,
)
from core.rules import Severity

State = Literal["open", "acknowledged", "snoozed", "resolved"]
EventKind = Literal[
    "opened",
    "retriggered",
    "acknowledged",
    "snoozed",
    "unsnoozed",
    "assigned",
    "escalated",
    "resolved",
    "note",
    "notified",
    "transition",
]
Disposition = Literal["actionable", "not_actionable", "false_reading", "duplicate", "other", "self_resolved"]

STATES: Final[tuple[State, ...]] = ("open", "acknowledged", "snoozed", "resolved")
# What a person may choose when resolving; `self_resolved` is only a detection's clear.
PERSON_DISPOSITIONS: Final[frozenset[str]] = frozenset(
    {"actionable", "not_actionable", "false_reading", "duplicate", "other"}
)
SELF_RESOLVED: Final = "self_resolved"
MAX_NOTE_CHARS: Final = 2000
MAX_SNOOZE: Final = timedelta(hours=24)

# What the API (and anyone acknowledging, snoozing or resolving) runs in the same transaction
# when `Transition.cancel_queued` is true: acknowledging on any channel cancels the rest.
CANCEL_QUEUED_SQL: Final = "UPDATE notifications SET state = 'cancelled' WHERE alert_id = %s AND state = 'queued'"


class TransitionError(Exception):
    """An illegal move (e.g. acknowledging a resolved alert); the message suits a 409."""


@dataclass(frozen=True, slots=True)
class Alert:
    """One row of `alerts`, as plain data."""

    id: str
    patient_id: str
    rule: str
    severity: str
    state: State
    title: str
    opened_at: datetime
    updated_at: datetime
    evidence: Mapping[str, Any] = field(default_factory=dict)
    repeat_count: int = 1
    last_triggered_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    assigned_to: str | None = None
    snoozed_until: datetime | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    disposition: str | None = None
    resolution_note: str | None = None
    escalation_tier: int = 0
    next_escalation_at: datetime | None = None
    detection_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Detection:
    """What the lifecycle needs of a `core.wire.DetectionRecord`."""

    detection_id: str
    patient_id: str
    rule: str
    severity: str
    kind: Literal["raise", "clear"]
    detected_at: datetime
    evidence: Mapping[str, Any] = field(default_factory=dict)
    clears: str | None = None


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One row of `alert_events` (actor_id None = the platform)."""

    kind: EventKind
    at: datetime
    from_state: State | None
    to_state: State
    actor_id: str | None = None
    note: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Transition:
    alert: Alert
    events: tuple[AlertEvent, ...]
    # True: run CANCEL_QUEUED_SQL for the alert in the same transaction.
    cancel_queued: bool = False
    # A tier whose notifications are to be queued now (opening: 0; escalation: the new tier).
    notify_tier: int | None = None


# --- helpers ---------------------------------------------------------------------------------
def _event(alert: Alert, new: Alert, kind: EventKind, now: datetime, **kw: Any) -> AlertEvent:
    return AlertEvent(kind=kind, at=now, from_state=alert.state, to_state=new.state, **kw)


def _check_note(note: str | None) -> str | None:
    if note is None:
        return None
    if len(note) > MAX_NOTE_CHARS:
        raise TransitionError(f"the note is longer than {MAX_NOTE_CHARS} characters")
    return note


def next_escalation_time(alert: Alert, tiers: Sequence[Tier], *, base: datetime | None = None) -> datetime | None:
    """When the alert escalates next: the next tier's `after_s` counted from `base` (default: the
    opening). A tier whose time has passed is due at once (the timer picks it up)."""
    nxt = next_tier(tiers, alert.escalation_tier, alert.severity)
    if nxt is None:
        return None
    return (base or alert.opened_at) + timedelta(seconds=nxt.after_s)


def title_for(rule: str, severity: str) -> str:
    return f"{rule.replace('_', ' ').capitalize()} ({severity})"


# --- detections ------------------------------------------------------------------------------
def open_alert(alert_id: str, detection: Detection, tiers: Sequence[Tier], now: datetime) -> Transition:
    """A raise with no unresolved alert for its (patient, rule): a new open alert; tier 0 (if
    it applies to the severity) is notified now."""
    require_aware(now)
    if detection.kind != "raise":
        raise TransitionError("only a raise opens an alert")
    alert = Alert(
        id=alert_id,
        patient_id=detection.patient_id,
        rule=detection.rule,
        severity=Severity(detection.severity),
        state="open",
        title=title_for(detection.rule, detection.severity),
        opened_at=now,
        updated_at=now,
        evidence=dict(detection.evidence),
        last_triggered_at=detection.detected_at,
        detection_ids=(detection.detection_id,),
    )
    # Tier 0 is who hears of it when it opens (if it applies to the severity); the timer takes
    # the alert to the next tier that applies.
    tier0 = next((t for t in tiers if t.tier == 0), None)
    notify = 0 if tier0 is not None and applies(tier0, alert.severity) else None
    alert = replace(alert, next_escalation_at=next_escalation_time(alert, tiers))
    event = AlertEvent(
        kind="opened",
        at=now,
        from_state=None,
        to_state="open",
        detail={"detection_id": detection.detection_id, "why": "detection raised", "severity": alert.severity},
    )
    return Transition(alert, (event,), notify_tier=notify)


def retrigger(alert: Alert, detection: Detection, tiers: Sequence[Tier], now: datetime) -> Transition:
    """A raise for an alert that is not resolved: count the repeat, keep the higher severity,
    take the newest evidence. A snoozed alert whose severity rises is snoozed no longer."""
    require_aware(now)
    if alert.state == "resolved":
        raise TransitionError("a resolved alert is not re-triggered: a new alert opens")
    if detection.kind != "raise":
        raise TransitionError("only a raise re-triggers an alert")
    severity = max_severity(alert.severity, detection.severity)
    rose = severity != Severity(alert.severity)
    new = replace(
        alert,
        severity=severity,
        title=title_for(alert.rule, severity),
        repeat_count=alert.repeat_count + 1,
        last_triggered_at=detection.detected_at,
        evidence=dict(detection.evidence),
        updated_at=now,
        detection_ids=(*alert.detection_ids, detection.detection_id),
    )
    events = []
    detail = {"detection_id": detection.detection_id, "why": "detection raised again", "severity": severity}
    if rose:
        detail["severity_from"] = alert.severity
    if alert.state == "snoozed" and rose:
        new = replace(new, state="open", snoozed_until=None)
        events.append(_event(alert, new, "retriggered", now, detail=detail))
        events.append(
            AlertEvent("unsnoozed", now, "snoozed", "open", detail={"why": "severity rose above the snoozed one"})
        )
        new = replace(new, next_escalation_at=next_escalation_time(new, tiers, base=now))
        return Transition(new, tuple(events))
    if new.state == "open" and rose:
        new = replace(new, next_escalation_at=next_escalation_time(new, tiers))
    return Transition(new, (_event(alert, new, "retriggered", now, detail=detail),))


def clear(alert: Alert, detection: Detection, now: datetime) -> Transition:
    """A detection's clear resolves the alert it belongs to with `self_resolved`."""
    require_aware(now)
    if detection.kind != "clear":
        raise TransitionError("only a clear resolves an alert by itself")
    if alert.state == "resolved":
        raise TransitionError("the alert is already resolved")
    if detection.clears is not None and detection.clears not in alert.detection_ids:
        raise TransitionError("the clear belongs to another episode")
    new = replace(
        alert,
        state="resolved",
        disposition=SELF_RESOLVED,
        resolved_at=now,
        resolved_by=None,
        snoozed_until=None,
        next_escalation_at=None,
        updated_at=now,
        detection_ids=(*alert.detection_ids, detection.detection_id),
    )
    detail = {"detection_id": detection.detection_id, "why": "detection cleared", "disposition": SELF_RESOLVED}
    return Transition(new, (_event(alert, new, "resolved", now, detail=detail),), cancel_queued=True)


# --- a person's moves (the API) ----------------------------------------------------------------
def acknowledge(alert: Alert, actor: str, now: datetime) -> Transition:
    """open or snoozed → acknowledged; stops escalation and cancels queued notifications."""
    require_aware(now)
    if alert.state == "acknowledged":
        raise TransitionError("the alert is already acknowledged")
    if alert.state == "resolved":
        raise TransitionError("a resolved alert cannot be acknowledged")
    new = replace(
        alert,
        state="acknowledged",
        acknowledged_at=now,
        acknowledged_by=actor,
        snoozed_until=None,
        next_escalation_at=None,
        updated_at=now,
    )
    return Transition(new, (_event(alert, new, "acknowledged", now, actor_id=actor),), cancel_queued=True)


def snooze(alert: Alert, until: datetime, now: datetime, actor: str | None = None) -> Transition:
    """open or acknowledged (or snoozed: a new time) → snoozed until `until` (at most 24 h).
    Mutes this alert only; stops its escalation and cancels what is queued for it."""
    require_aware(now)
    require_aware(until)
    if alert.state == "resolved":
        raise TransitionError("a resolved alert cannot be snoozed")
    if until <= now:
        raise TransitionError("a snooze must end in the future")
    if until - now > MAX_SNOOZE:
        raise TransitionError("a snooze may last at most 24 hours")
    new = replace(alert, state="snoozed", snoozed_until=until, next_escalation_at=None, updated_at=now)
    detail = {"until": until.astimezone(UTC).isoformat()}
    return Transition(new, (_event(alert, new, "snoozed", now, actor_id=actor, detail=detail),), cancel_queued=True)


def expire_snooze(alert: Alert, tiers: Sequence[Tier], now: datetime) -> Transition:
    """snoozed whose time is up → open; escalation restarts from its current tier, counted
    from now (the next tier after the gap between the two tiers' `after_s`)."""
    require_aware(now)
    if alert.state != "snoozed" or alert.snoozed_until is None:
        raise TransitionError("the alert is not snoozed")
    if alert.snoozed_until > now:
        raise TransitionError("the snooze has not ended")
    new = replace(alert, state="open", snoozed_until=None, updated_at=now)
    current = next((t for t in tiers if t.tier == alert.escalation_tier), None)
    base = now - timedelta(seconds=current.after_s) if current is not None else now
    new = replace(new, next_escalation_at=next_escalation_time(new, tiers, base=base))
    return Transition(new, (_event(alert, new, "unsnoozed", now, detail={"why": "snooze ended"}),))


def assign(alert: Alert, assignee: str | None, actor: str, now: datetime) -> Transition:
    """Give the alert to a person (None: nobody); the state does not change."""
    require_aware(now)
    if alert.state == "resolved":
        raise TransitionError("a resolved alert cannot be assigned")
    if assignee == alert.assigned_to:
        raise TransitionError("the alert is already assigned so")
    new = replace(alert, assigned_to=assignee, updated_at=now)
    detail = {"assigned_to": assignee, "assigned_from": alert.assigned_to}
    return Transition(new, (_event(alert, new, "assigned", now, actor_id=actor, detail=detail),))


def add_note(alert: Alert, note: str, actor: str, now: datetime) -> Transition:
    """A note in the alert's history; any state, resolved included."""
    require_aware(now)
    if not note.strip():
        raise TransitionError("a note needs text")
    _check_note(note)
    new = replace(alert, updated_at=now)
    return Transition(new, (_event(alert, new, "note", now, actor_id=actor, note=note),))


def resolve(alert: Alert, disposition: str, note: str | None, actor: str, now: datetime) -> Transition:
    """Any unresolved state → resolved, with a person's disposition (`other` needs a note)."""
    require_aware(now)
    if alert.state == "resolved":
        raise TransitionError("the alert is already resolved")
    if disposition == SELF_RESOLVED:
        raise TransitionError("self_resolved is set only by a detection's clear")
    if disposition not in PERSON_DISPOSITIONS:
        raise TransitionError(f"unknown disposition {disposition!r}")
    note = _check_note(note)
    if disposition == "other" and not (note or "").strip():
        raise TransitionError("the disposition 'other' needs a note")
    new = replace(
        alert,
        state="resolved",
        disposition=disposition,
        resolution_note=note,
        resolved_at=now,
        resolved_by=actor,
        snoozed_until=None,
        next_escalation_at=None,
        updated_at=now,
    )
    event = _event(alert, new, "resolved", now, actor_id=actor, note=note, detail={"disposition": disposition})
    return Transition(new, (event,), cancel_queued=True)


# --- timers ------------------------------------------------------------------------------------
def escalation_due(alert: Alert, now: datetime) -> bool:
    return alert.state == "open" and alert.next_escalation_at is not None and alert.next_escalation_at <= now


def escalate(alert: Alert, tiers: Sequence[Tier], now: datetime) -> Transition:
    """Not acknowledged in time → the next tier (whose notifications are queued now)."""
    require_aware(now)
    if not escalation_due(alert, now):
        raise TransitionError("the alert is not due to escalate")
    nxt = next_tier(tiers, alert.escalation_tier, alert.severity)
    if nxt is None:
        new = replace(alert, next_escalation_at=None, updated_at=now)
        return Transition(new, ())
    new = replace(alert, escalation_tier=nxt.tier, updated_at=now)
    following = next_tier(tiers, nxt.tier, alert.severity)
    if following is None:
        new = replace(new, next_escalation_at=None)
    else:
        # counted from opening; a tier already overdue (a long outage) fires at the next tick
        new = replace(new, next_escalation_at=max(now, alert.opened_at + timedelta(seconds=following.after_s)))
    detail = {"tier": nxt.tier, "from_tier": alert.escalation_tier, "why": f"not acknowledged after {nxt.after_s} s"}
    return Transition(new, (_event(alert, new, "escalated", now, detail=detail),), notify_tier=nxt.tier)


# --- figures -----------------------------------------------------------------------------------
def precision(dispositions: Iterable[str | None]) -> float | None:
    """actionable ÷ alerts resolved by a person (self_resolved and unresolved do not count);
    None while nobody resolved one."""
    by_person = [d for d in dispositions if d in PERSON_DISPOSITIONS]
    if not by_person:
        return None
    return sum(1 for d in by_person if d == "actionable") / len(by_person)


def alerts_per_patient_day(alerts: int, patients: int, days: float) -> float | None:
    if patients <= 0 or days <= 0:
        return None
    return alerts / (patients * days)


__all__ = [
    "CANCEL_QUEUED_SQL",
    "DEFAULT_TIERS",
    "PERSON_DISPOSITIONS",
    "SELF_RESOLVED",
    "Alert",
    "AlertEvent",
    "Detection",
    "Tier",
    "Transition",
    "TransitionError",
    "acknowledge",
    "add_note",
    "alerts_per_patient_day",
    "applies",
    "assign",
    "clear",
    "escalate",
    "escalation_due",
    "expire_snooze",
    "max_severity",
    "next_escalation_time",
    "next_tier",
    "open_alert",
    "precision",
    "quiet_hours_delay",
    "resolve",
    "retrigger",
    "severity_rank",
    "snooze",
    "tiers_or_default",
    "title_for",
]
