"""What the alert service does with one detection and on each timer round, inside the
caller's transaction: the rules are core/alert_lifecycle.py's, the SQL alerts/repository.py's.

Several care teams may have the same patient: the alert's tier schedule is their union (per tier
number the earliest `after_s` and the lowest `min_severity` of the teams that have it), and a
tier's notifications go to every team that has that tier for the alert's severity. A team
without escalation_tiers rows uses `DEFAULT_TIERS` (ADR 0018).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from alerts import repository as repo
from alerts.repository import Conn, TeamTiers
from core.alert_lifecycle import (
    DEFAULT_TIERS,
    Alert,
    Detection,
    Tier,
    Transition,
    TransitionError,
    applies,
    clear,
    escalate,
    expire_snooze,
    open_alert,
    quiet_hours_delay,
    retrigger,
    severity_rank,
)
from core.wire import DetectionRecord

DetectionOutcome = Literal["opened", "retriggered", "cleared", "duplicate", "stale_clear"]
CHANNELS: Final = ("email", "webhook")  # 'inbox' is the history row itself (SSE), nothing to queue


def detection_of(record: DetectionRecord) -> Detection:
    return Detection(
        detection_id=record.detection_id,
        patient_id=record.patient_id,
        rule=str(record.rule),
        severity=str(record.severity),
        kind=record.kind,
        detected_at=record.detected_at,
        evidence=record.evidence,
        clears=record.clears,
    )


def team_schedule(team: TeamTiers) -> tuple[Tier, ...]:
    return team.tiers or DEFAULT_TIERS


def merged_tiers(teams: Sequence[TeamTiers]) -> tuple[Tier, ...]:
    if not teams:
        return DEFAULT_TIERS
    by_tier: dict[int, Tier] = {}
    for team in teams:
        for t in team_schedule(team):
            have = by_tier.get(t.tier)
            if have is None:
                by_tier[t.tier] = Tier(t.tier, t.after_s, t.min_severity)
            else:
                low = (
                    t.min_severity
                    if severity_rank(t.min_severity) < severity_rank(have.min_severity)
                    else have.min_severity
                )
                by_tier[t.tier] = Tier(t.tier, min(have.after_s, t.after_s), low)
    return tuple(by_tier[n] for n in sorted(by_tier))


@dataclass(frozen=True, slots=True)
class Applied:
    outcome: DetectionOutcome
    alert: Alert | None = None
    transition: Transition | None = None
    queued: tuple[str, ...] = ()  # channels of the notifications queued


async def queue_tier(conn: Conn, alert: Alert, teams: Sequence[TeamTiers], tier: int, now: datetime) -> tuple[str, ...]:
    """Queue the notifications of `tier` of every team that has it for the alert's severity:
    e-mail to each recipient with an address, due after their quiet hours unless critical;
    each enabled webhook of the team, due now."""
    rows: list[tuple[str, int, str, str, datetime]] = []
    for team in teams:
        row = next((t for t in team_schedule(team) if t.tier == tier), None)
        if row is None or not applies(row, alert.severity):
            continue
        if "email" in row.channels:
            for person in await repo.email_recipients(conn, team.care_team_id, row.recipients):
                due = quiet_hours_delay(alert.severity, now, person.quiet_start, person.quiet_end, person.time_zone)
                rows.append((alert.id, tier, "email", person.email, due))
        if "webhook" in row.channels:
            rows.extend(
                (alert.id, tier, "webhook", hook, now) for hook in await repo.team_webhooks(conn, team.care_team_id)
            )
    await repo.queue_notifications(conn, rows)
    return tuple(r[2] for r in rows)


async def _write(conn: Conn, t: Transition, *, new: bool, teams: Sequence[TeamTiers], now: datetime) -> tuple[str, ...]:
    if new:
        await repo.insert_alert(conn, t.alert)
    else:
        await repo.update_alert(conn, t.alert)
    await repo.insert_events(conn, t.alert, t.events)
    if t.cancel_queued:
        await repo.cancel_queued(conn, t.alert.id)
    if t.notify_tier is not None:
        return await queue_tier(conn, t.alert, teams, t.notify_tier, now)
    return ()


async def apply_detection(conn: Conn, detection: Detection, now: datetime) -> Applied:
    """One detection, in the caller's transaction: a seen id does nothing; a raise opens the
    (patient, rule) alert or re-triggers the unresolved one; a clear resolves its episode's
    alert `self_resolved`; a clear with nothing to resolve is only remembered."""
    if await repo.detection_seen(conn, detection.detection_id):
        return Applied("duplicate")
    current = await repo.unresolved_alert(conn, detection.patient_id, detection.rule)
    if detection.kind == "clear":
        if current is None:
            await repo.record_detection(conn, detection, None)
            return Applied("stale_clear")
        try:
            t = clear(current, detection, now)
        except TransitionError:
            await repo.record_detection(conn, detection, current.id)
            return Applied("stale_clear", current)
        await _write(conn, t, new=False, teams=(), now=now)
        await repo.record_detection(conn, detection, t.alert.id)
        return Applied("cleared", t.alert, t)
    teams = await repo.team_tiers(conn, detection.patient_id)
    tiers = merged_tiers(teams)
    if current is None:
        t = open_alert(str(uuid.uuid4()), detection, tiers, now)
        queued = await _write(conn, t, new=True, teams=teams, now=now)
        outcome: DetectionOutcome = "opened"
    else:
        t = retrigger(current, detection, tiers, now)
        queued = await _write(conn, t, new=False, teams=teams, now=now)
        outcome = "retriggered"
    await repo.record_detection(conn, detection, t.alert.id)
    return Applied(outcome, t.alert, t, queued)


async def escalate_due(conn: Conn, now: datetime, limit: int) -> list[Transition]:
    """Alerts still open past their next escalation time move up one tier."""
    done = []
    for alert in await repo.due_escalations(conn, now, limit):
        teams = await repo.team_tiers(conn, alert.patient_id)
        t = escalate(alert, merged_tiers(teams), now)
        await _write(conn, t, new=False, teams=teams, now=now)
        done.append(t)
    return done


async def expire_snoozes(conn: Conn, now: datetime, limit: int) -> list[Alert]:
    """Snoozes whose time is up: the alert is open again and its escalation restarts."""
    done = []
    for alert in await repo.due_snoozes(conn, now, limit):
        teams = await repo.team_tiers(conn, alert.patient_id)
        t = expire_snooze(alert, merged_tiers(teams), now)
        await _write(conn, t, new=False, teams=teams, now=now)
        done.append(t.alert)
    return done
