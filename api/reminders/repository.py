"""All SQL of a patient's reminders and profile (the API's role: read reminders, mark seen,
keep the profile)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, Final

from api.db import Conn

_COLUMNS: Final = (
    "id, kind, metric, dose_id, channel, follow_up, scheduled_at, window_end, due_at, state, outcome, sent_at, seen_at"
)

_MARK_SEEN: Final = """
UPDATE reminders SET seen_at = coalesce(seen_at, %s)
WHERE id = %s AND patient_id = %s AND state = 'sent'
RETURNING id, kind, metric, dose_id, channel, follow_up, scheduled_at, window_end, due_at, state, outcome, sent_at,
          seen_at
"""


@dataclass(frozen=True, slots=True)
class ReminderRow:
    id: int
    kind: str
    metric: str
    dose_id: str | None
    channel: str
    follow_up: bool
    scheduled_at: datetime
    window_end: datetime
    due_at: datetime
    state: str
    outcome: str | None
    sent_at: datetime | None
    seen_at: datetime | None


@dataclass(frozen=True, slots=True)
class PreferencesRow:
    email: str | None
    channels: list[str]
    quiet_start: time | None
    quiet_end: time | None
    time_zone: str | None
    updated_at: datetime


async def reminders(
    conn: Conn, patient_id: str, since: datetime, channel: str | None, limit: int
) -> tuple[list[ReminderRow], list[ReminderRow]]:
    """(queued, settled since `since`) of the patient."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM reminders WHERE patient_id = %s AND state = 'queued' "  # noqa: S608 - fixed columns
        "AND (%s::text IS NULL OR channel = %s) ORDER BY due_at, follow_up, channel LIMIT %s",
        (patient_id, channel, channel, limit),
    )
    pending = [ReminderRow(*row) for row in await cur.fetchall()]
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM reminders WHERE patient_id = %s AND state <> 'queued' "  # noqa: S608 - fixed columns
        "AND scheduled_at >= %s AND (%s::text IS NULL OR channel = %s) "
        "ORDER BY scheduled_at DESC, follow_up DESC, channel LIMIT %s",
        (patient_id, since, channel, channel, limit),
    )
    recent = [ReminderRow(*row) for row in await cur.fetchall()]
    return pending, recent


async def mark_seen(conn: Conn, patient_id: str, reminder_id: int, now: datetime) -> ReminderRow | None:
    """Mark the patient's own sent reminder seen (once); None when it is not theirs or not sent."""
    cur = await conn.execute(
        _MARK_SEEN,
        (now, reminder_id, patient_id),
    )
    row = await cur.fetchone()
    return None if row is None else ReminderRow(*row)


async def preferences(conn: Conn, patient_id: str) -> PreferencesRow | None:
    cur = await conn.execute(
        "SELECT email, channels, quiet_start, quiet_end, time_zone, updated_at FROM patient_preferences "
        "WHERE patient_id = %s",
        (patient_id,),
    )
    row = await cur.fetchone()
    return None if row is None else PreferencesRow(row[0], list(row[1] or []), *row[2:])


async def save_preferences(
    conn: Conn,
    patient_id: str,
    *,
    email: str | None,
    channels: list[str],
    quiet_start: time | None,
    quiet_end: time | None,
    time_zone: str | None,
    now: datetime,
) -> PreferencesRow:
    values: tuple[Any, ...] = (patient_id, email, channels, quiet_start, quiet_end, time_zone, now)
    cur = await conn.execute(
        """
        INSERT INTO patient_preferences (patient_id, email, channels, quiet_start, quiet_end, time_zone, updated_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (patient_id) DO UPDATE SET
            email = EXCLUDED.email, channels = EXCLUDED.channels, quiet_start = EXCLUDED.quiet_start,
            quiet_end = EXCLUDED.quiet_end, time_zone = EXCLUDED.time_zone, updated_at = EXCLUDED.updated_at
        RETURNING email, channels, quiet_start, quiet_end, time_zone, updated_at
        """,
        values,
    )
    row = await cur.fetchone()
    assert row is not None
    return PreferencesRow(row[0], list(row[1] or []), *row[2:])


async def plan_zone(conn: Conn, patient_id: str) -> str | None:
    """The time zone of the patient's care plan, if they have one."""
    cur = await conn.execute("SELECT plan ->> 'timezone' FROM care_plans WHERE patient_id = %s", (patient_id,))
    row = await cur.fetchone()
    return str(row[0]) if row and row[0] else None
