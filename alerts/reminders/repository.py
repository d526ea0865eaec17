"""All SQL of the reminder loop: the plans that have schedules, the patients' choices, the
readings of a slot, and the `reminders` rows (plan, lock one that is due, settle). The caller
owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from psycopg import AsyncConnection

from alerts.reminders.rules import Channel, Preferences, Reminder

Conn = AsyncConnection[Any]

_SELECT: Final = """
SELECT id, patient_id, schedule_key, slot_key, kind, metric, dose_id, channel, follow_up,
       scheduled_at, window_start, window_end, due_at, attempts
FROM reminders
WHERE {where}
"""
# Still queued and due; a row another loop holds is skipped, not waited for.
_LOCK_DUE: Final = _SELECT.format(where="id = %s AND state = 'queued' AND due_at <= %s FOR UPDATE SKIP LOCKED")
# Sent, window closed, outcome not settled yet (the partial index reminders_sent_open).
_OPEN_SENT: Final = _SELECT.format(
    where="state = 'sent' AND outcome = 'sent' AND window_end <= %s ORDER BY window_end LIMIT %s FOR UPDATE SKIP LOCKED"
)


def _reminder(row: Sequence[Any]) -> Reminder:
    (id_, patient, schedule, slot, kind, metric, dose, channel, follow_up, at, start, end, due, attempts) = row
    return Reminder(
        id=int(id_),
        patient_id=patient,
        schedule_key=schedule,
        slot_key=slot,
        kind=kind,
        metric=metric,
        dose_id=dose,
        channel=channel,
        follow_up=bool(follow_up),
        scheduled_at=at,
        window_start=start,
        window_end=end,
        due_at=due,
        attempts=int(attempts),
    )


async def plans_with_schedules(conn: Conn) -> list[tuple[str, Any]]:
    """(patient id, plan JSON) of every plan with a measurement or medication schedule."""
    cur = await conn.execute(
        """
        SELECT patient_id, plan FROM care_plans
        WHERE jsonb_typeof(plan -> 'measurements') = 'array' AND jsonb_array_length(plan -> 'measurements') > 0
           OR jsonb_typeof(plan -> 'medications') = 'array' AND jsonb_array_length(plan -> 'medications') > 0
        """
    )
    return [(str(p), plan) for p, plan in await cur.fetchall()]


async def plan_of(conn: Conn, patient_id: str) -> Any | None:
    cur = await conn.execute("SELECT plan FROM care_plans WHERE patient_id = %s", (patient_id,))
    row = await cur.fetchone()
    return None if row is None else row[0]


async def preferences(conn: Conn, patient_ids: Sequence[str]) -> dict[str, Preferences]:
    cur = await conn.execute(
        "SELECT patient_id, email, channels, quiet_start, quiet_end, time_zone FROM patient_preferences "
        "WHERE patient_id = ANY(%s)",
        (list(patient_ids),),
    )
    out: dict[str, Preferences] = {}
    for patient, email, channels, quiet_start, quiet_end, zone in await cur.fetchall():
        chosen: tuple[Channel, ...] = tuple(c for c in ("in_app", "email") if c in (channels or ()))
        out[str(patient)] = Preferences(
            channels=chosen, email=email, quiet_start=quiet_start, quiet_end=quiet_end, time_zone=zone
        )
    return out


async def insert_planned(conn: Conn, planned: Sequence[Reminder]) -> int:
    """Store planned reminders; one already stored for its (patient, schedule, slot, channel,
    follow-up) stays as it is. Returns how many rows are new."""
    if not planned:
        return 0
    async with conn.cursor() as cur:
        await cur.executemany(
            """
            INSERT INTO reminders (patient_id, schedule_key, slot_key, kind, metric, dose_id, channel, follow_up,
                                   scheduled_at, window_start, window_end, due_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (patient_id, schedule_key, slot_key, channel, follow_up) DO NOTHING
            """,
            [
                (
                    r.patient_id,
                    r.schedule_key,
                    r.slot_key,
                    r.kind,
                    r.metric,
                    r.dose_id,
                    r.channel,
                    r.follow_up,
                    r.scheduled_at,
                    r.window_start,
                    r.window_end,
                    r.due_at,
                )
                for r in planned
            ],
        )
        return max(0, cur.rowcount)


async def due_ids(conn: Conn, now: datetime, limit: int) -> list[int]:
    cur = await conn.execute(
        "SELECT id FROM reminders WHERE state = 'queued' AND due_at <= %s ORDER BY due_at LIMIT %s", (now, limit)
    )
    return [int(r[0]) for r in await cur.fetchall()]


async def lock_due(conn: Conn, reminder_id: int, now: datetime) -> Reminder | None:
    """The reminder, locked, if it is still queued and due (another loop may hold or have settled it)."""
    cur = await conn.execute(
        _LOCK_DUE,
        (reminder_id, now),
    )
    row = await cur.fetchone()
    return None if row is None else _reminder(row)


async def reading_times(conn: Conn, r: Reminder, lo: datetime, hi: datetime) -> list[datetime]:
    """Times of the patient's readings of the reminder's metric (and dose) in [lo, hi]."""
    cur = await conn.execute(
        "SELECT ts FROM observations WHERE patient_id = %s AND metric = %s AND ts >= %s AND ts <= %s "
        "AND (%s::text IS NULL OR dose_id = %s)",
        (r.patient_id, r.metric, lo, hi, r.dose_id, r.dose_id),
    )
    return [row[0] for row in await cur.fetchall()]


async def settle(
    conn: Conn, reminder_id: int, state: str, outcome: str, now: datetime, error: str | None = None
) -> None:
    """End a queued reminder: sent (at `now`), cancelled or skipped, with its outcome. (The
    loop may not read `last_error`: the statement only writes it.)"""
    sent_at = now if state == "sent" else None
    if error is None:
        await conn.execute(
            "UPDATE reminders SET state = %s, outcome = %s, settled_at = %s, sent_at = %s WHERE id = %s",
            (state, outcome, now, sent_at, reminder_id),
        )
    else:
        await conn.execute(
            "UPDATE reminders SET state = %s, outcome = %s, settled_at = %s, sent_at = %s, last_error = %s "
            "WHERE id = %s",
            (state, outcome, now, sent_at, error, reminder_id),
        )


async def defer(conn: Conn, reminder_id: int, until: datetime) -> None:
    """Look at the reminder again at `until` (the end of quiet hours)."""
    await conn.execute("UPDATE reminders SET due_at = %s WHERE id = %s", (until, reminder_id))


async def retry(conn: Conn, reminder_id: int, until: datetime, attempts: int, error: str) -> None:
    """Try the e-mail again at `until` after a temporary failure."""
    await conn.execute(
        "UPDATE reminders SET due_at = %s, attempts = %s, last_error = %s WHERE id = %s",
        (until, attempts, error, reminder_id),
    )


async def open_sent(conn: Conn, before: datetime, limit: int) -> list[Reminder]:
    """Sent reminders whose window closed before `before` and whose outcome is not settled yet."""
    cur = await conn.execute(
        _OPEN_SENT,
        (before, limit),
    )
    return [_reminder(row) for row in await cur.fetchall()]


async def set_outcome(conn: Conn, reminder_id: int, outcome: str) -> None:
    await conn.execute("UPDATE reminders SET outcome = %s WHERE id = %s", (outcome, reminder_id))
