"""All SQL of the alert service (grants: core/migrations/0007_alerts_service.sql).

Functions take a connection inside the caller's transaction and never commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from core.alert_lifecycle import CANCEL_QUEUED_SQL, Alert, AlertEvent, Detection, Tier

Conn = AsyncConnection[Any]

ALERT_COLUMNS: Final = (
    "id, patient_id, rule, severity, state, title, opened_at, updated_at, evidence, repeat_count, "
    "last_triggered_at, acknowledged_at, acknowledged_by, assigned_to, snoozed_until, resolved_at, resolved_by, "
    "disposition, resolution_note, escalation_tier, next_escalation_at, detection_ids"
)


def alert_from_row(row: Sequence[Any]) -> Alert:
    """An `alerts` row selected with ALERT_COLUMNS, as the lifecycle's plain data."""

    def text(value: Any) -> str | None:
        return None if value is None else str(value)

    return Alert(
        id=str(row[0]),
        patient_id=row[1],
        rule=row[2],
        severity=row[3],
        state=row[4],
        title=row[5],
        opened_at=row[6],
        updated_at=row[7],
        evidence=row[8] or {},
        repeat_count=row[9],
        last_triggered_at=row[10],
        acknowledged_at=row[11],
        acknowledged_by=text(row[12]),
        assigned_to=text(row[13]),
        snoozed_until=row[14],
        resolved_at=row[15],
        resolved_by=text(row[16]),
        disposition=row[17],
        resolution_note=row[18],
        escalation_tier=row[19],
        next_escalation_at=row[20],
        detection_ids=tuple(row[21] or ()),
    )


async def detection_seen(conn: Conn, detection_id: str) -> bool:
    cur = await conn.execute("SELECT 1 FROM alert_detections WHERE detection_id = %s", (detection_id,))
    return await cur.fetchone() is not None


async def record_detection(conn: Conn, detection: Detection, alert_id: str | None) -> None:
    await conn.execute(
        "INSERT INTO alert_detections (detection_id, alert_id, patient_id, rule, kind) VALUES (%s, %s, %s, %s, %s)",
        (detection.detection_id, alert_id, detection.patient_id, detection.rule, detection.kind),
    )


async def unresolved_alert(conn: Conn, patient_id: str, rule: str) -> Alert | None:
    """The one unresolved alert of (patient, rule), locked for this transaction."""
    cur = await conn.execute(
        f"SELECT {ALERT_COLUMNS} FROM alerts WHERE patient_id = %s AND rule = %s AND state <> 'resolved' "  # noqa: S608
        "FOR UPDATE",
        (patient_id, rule),
    )
    row = await cur.fetchone()
    return None if row is None else alert_from_row(row)


async def insert_alert(conn: Conn, a: Alert) -> None:
    await conn.execute(
        "INSERT INTO alerts (id, patient_id, rule, severity, state, title, evidence, opened_at, updated_at, "
        "detection_ids, repeat_count, last_triggered_at, escalation_tier, next_escalation_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            a.id,
            a.patient_id,
            a.rule,
            str(a.severity),
            a.state,
            a.title,
            Jsonb(dict(a.evidence)),
            a.opened_at,
            a.updated_at,
            list(a.detection_ids),
            a.repeat_count,
            a.last_triggered_at,
            a.escalation_tier,
            a.next_escalation_at,
        ),
    )


async def update_alert(conn: Conn, a: Alert) -> None:
    """Write what this service may change (never who acknowledged, resolved or was assigned)."""
    await conn.execute(
        "UPDATE alerts SET severity = %s, state = %s, title = %s, evidence = %s, updated_at = %s, resolved_at = %s, "
        "disposition = %s, detection_ids = %s, repeat_count = %s, last_triggered_at = %s, snoozed_until = %s, "
        "escalation_tier = %s, next_escalation_at = %s WHERE id = %s",
        (
            str(a.severity),
            a.state,
            a.title,
            Jsonb(dict(a.evidence)),
            a.updated_at,
            a.resolved_at,
            a.disposition,
            list(a.detection_ids),
            a.repeat_count,
            a.last_triggered_at,
            a.snoozed_until,
            a.escalation_tier,
            a.next_escalation_at,
            a.id,
        ),
    )


async def insert_events(conn: Conn, alert: Alert, events: Iterable[AlertEvent]) -> None:
    rows = [
        (alert.id, e.at, e.actor_id, e.from_state, e.to_state, e.note, alert.patient_id, e.kind, Jsonb(dict(e.detail)))
        for e in events
    ]
    if not rows:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO alert_events (alert_id, at, actor_id, from_state, to_state, note, patient_id, kind, detail) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


async def cancel_queued(conn: Conn, alert_id: str) -> None:
    await conn.execute(CANCEL_QUEUED_SQL, (alert_id,))


@dataclass(frozen=True, slots=True)
class TeamTiers:
    care_team_id: str
    tiers: tuple[Tier, ...]  # the team's rows; empty = the defaults (ADR 0018)


async def team_tiers(conn: Conn, patient_id: str) -> list[TeamTiers]:
    """The patient's care teams with their escalation tiers."""
    cur = await conn.execute(
        "SELECT p.care_team_id, t.tier, t.after_s, t.min_severity, t.channels, t.recipients "
        "FROM care_team_patients_shared p LEFT JOIN escalation_tiers t ON t.care_team_id = p.care_team_id "
        "WHERE p.patient_id = %s ORDER BY p.care_team_id, t.tier",
        (patient_id,),
    )
    teams: dict[str, list[Tier]] = {}
    for team, tier, after_s, min_severity, channels, recipients in await cur.fetchall():
        rows = teams.setdefault(str(team), [])
        if tier is not None:
            rows.append(Tier(tier, after_s, min_severity, tuple(channels), tuple(str(r) for r in recipients)))
    return [TeamTiers(team, tuple(rows)) for team, rows in teams.items()]


@dataclass(frozen=True, slots=True)
class EmailRecipient:
    user_id: str
    email: str
    quiet_start: time | None
    quiet_end: time | None
    time_zone: str


async def email_recipients(conn: Conn, care_team_id: str, user_ids: Sequence[str]) -> list[EmailRecipient]:
    """Addresses of the named users (any enabled clinician or admin), or with no names, of every
    enabled clinician of the team; users without an address are left out."""
    if user_ids:
        cur = await conn.execute(
            "SELECT u.id, s.email, s.quiet_start, s.quiet_end, s.time_zone FROM users u "
            "JOIN notification_settings s ON s.user_id = u.id "
            "WHERE u.id = ANY(%s::uuid[]) AND NOT u.disabled AND u.role IN ('clinician', 'admin') "
            "AND s.email IS NOT NULL ORDER BY u.id",
            (list(user_ids),),
        )
    else:
        cur = await conn.execute(
            "SELECT u.id, s.email, s.quiet_start, s.quiet_end, s.time_zone FROM care_team_members m "
            "JOIN users u ON u.id = m.user_id JOIN notification_settings s ON s.user_id = u.id "
            "WHERE m.care_team_id = %s AND NOT u.disabled AND u.role = 'clinician' AND s.email IS NOT NULL "
            "ORDER BY u.id",
            (care_team_id,),
        )
    return [EmailRecipient(str(r[0]), r[1], r[2], r[3], r[4]) for r in await cur.fetchall()]


async def team_webhooks(conn: Conn, care_team_id: str) -> list[str]:
    cur = await conn.execute("SELECT id FROM webhooks WHERE care_team_id = %s AND enabled ORDER BY id", (care_team_id,))
    return [str(r[0]) for r in await cur.fetchall()]


async def queue_notifications(conn: Conn, rows: Sequence[tuple[str, int, str, str, datetime]]) -> int:
    """(alert_id, tier, channel, recipient, due_at); one already queued for the same key is kept."""
    if not rows:
        return 0
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO notifications (alert_id, tier, channel, recipient, due_at) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            rows,
        )
        return max(cur.rowcount, 0)


async def due_escalations(conn: Conn, now: datetime, limit: int) -> list[Alert]:
    cur = await conn.execute(
        f"SELECT {ALERT_COLUMNS} FROM alerts WHERE next_escalation_at <= %s AND state = 'open' "  # noqa: S608
        "ORDER BY next_escalation_at LIMIT %s FOR UPDATE SKIP LOCKED",
        (now, limit),
    )
    return [alert_from_row(r) for r in await cur.fetchall()]


async def due_snoozes(conn: Conn, now: datetime, limit: int) -> list[Alert]:
    cur = await conn.execute(
        f"SELECT {ALERT_COLUMNS} FROM alerts WHERE state = 'snoozed' AND snoozed_until <= %s "  # noqa: S608
        "ORDER BY snoozed_until LIMIT %s FOR UPDATE SKIP LOCKED",
        (now, limit),
    )
    return [alert_from_row(r) for r in await cur.fetchall()]


async def resolved_by_rule(conn: Conn, since: datetime) -> list[tuple[str, str, int]]:
    """(rule, disposition, count) of alerts resolved since then."""
    cur = await conn.execute(
        "SELECT rule, disposition, count(*) FROM alerts WHERE state = 'resolved' AND resolved_at >= %s "
        "GROUP BY rule, disposition ORDER BY rule, disposition",
        (since,),
    )
    return [(r[0], r[1], int(r[2])) for r in await cur.fetchall()]


async def opened_and_patients(conn: Conn, since: datetime) -> tuple[int, int]:
    """(alerts opened since then, patients enrolled)."""
    cur = await conn.execute(
        "SELECT (SELECT count(*) FROM alerts WHERE opened_at >= %s), (SELECT count(*) FROM patients)", (since,)
    )
    row = await cur.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)
