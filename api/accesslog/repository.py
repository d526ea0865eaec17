"""SQL of the access log (audit_events about one patient, read-only here) and of the privacy
flags (0013): a patient's flag, the admins' queue and review."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import class_row

from api.accesslog.schemas import AccessLogQuery, PrivacyFlagQuery
from api.db import Conn

# The grant id an event of break-glass access carries (api/access/service.py), cast only when it
# is a well-formed uuid: the detail is jsonb and a malformed value must not fail the whole page.
_GRANT_OF_EVENT = """
    CASE WHEN e.detail ->> 'break_glass_grant'
              ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
         THEN (e.detail ->> 'break_glass_grant')::uuid END
"""


@dataclass(frozen=True, slots=True)
class EventRow:
    """One audit event about the patient, with who did it, the grant's reason and the latest flag."""

    id: int
    at: datetime
    actor_id: uuid.UUID | None
    actor_role: str | None
    actor_name: str | None
    action: str
    resource: str
    outcome: str
    detail: dict[str, Any]
    break_glass: bool
    break_glass_reason: str | None
    flag_id: int | None
    flag_state: str | None
    flagged_at: datetime | None
    reviewed_at: datetime | None
    outcome_note: str | None


async def patient_events(
    conn: Conn, patient_id: str, me: uuid.UUID, query: AccessLogQuery, limit: int
) -> list[EventRow]:
    """The patient's events, newest first (at, id), after the cursor's (at, id)."""
    after_at, after_id = query.after if query.after is not None else (None, None)
    async with conn.cursor(row_factory=class_row(EventRow)) as cur:
        await cur.execute(
            f"""
            SELECT e.id, e.at, e.actor_id, e.actor_role, u.display_name AS actor_name,
                   e.action, e.resource, e.outcome, e.detail,
                   coalesce(e.detail ->> 'break_glass' = 'true', false) AS break_glass,
                   g.reason AS break_glass_reason,
                   f.id AS flag_id, f.state AS flag_state, f.flagged_at, f.reviewed_at, f.outcome_note
            FROM audit_events AS e
            LEFT JOIN users AS u ON u.id = e.actor_id
            LEFT JOIN break_glass_grants AS g ON g.id = {_GRANT_OF_EVENT} AND g.patient_id = e.patient_id
            LEFT JOIN LATERAL (
                SELECT pf.id, pf.state, pf.flagged_at, pf.reviewed_at, pf.outcome_note
                FROM privacy_flags AS pf
                WHERE pf.patient_id = e.patient_id AND pf.audit_event_id = e.id
                ORDER BY pf.state = 'open' DESC, pf.flagged_at DESC, pf.id DESC
                LIMIT 1
            ) AS f ON true
            WHERE e.patient_id = %(patient)s
              AND (%(mine)s OR e.actor_id IS DISTINCT FROM %(me)s::uuid)
              AND (%(role)s::text IS NULL OR e.actor_role = %(role)s::text)
              AND (NOT %(break_glass)s OR e.detail ->> 'break_glass' = 'true')
              AND (%(start)s::timestamptz IS NULL OR e.at >= %(start)s::timestamptz)
              AND (%(end)s::timestamptz IS NULL OR e.at < %(end)s::timestamptz)
              AND (%(after_at)s::timestamptz IS NULL
                   OR (e.at, e.id) < (%(after_at)s::timestamptz, %(after_id)s::bigint))
            ORDER BY e.at DESC, e.id DESC
            LIMIT %(limit)s
            """,  # noqa: S608 - _GRANT_OF_EVENT is a constant of this module, not input
            {
                "patient": patient_id,
                "me": me,
                "mine": query.include_mine,
                "role": query.role,
                "break_glass": query.break_glass,
                "start": query.start,
                "end": query.end,
                "after_at": after_at,
                "after_id": after_id,
                "limit": limit,
            },
        )
        return await cur.fetchall()


async def event_of_patient(conn: Conn, event_id: int, patient_id: str) -> bool:
    """True when the audit event exists and is about this patient."""
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM audit_events WHERE id = %s AND patient_id = %s)", (event_id, patient_id)
    )
    row = await cur.fetchone()
    return bool(row and row[0])


@dataclass(frozen=True, slots=True)
class FlagRow:
    id: int
    state: str
    flagged_at: datetime
    reviewed_at: datetime | None
    outcome_note: str | None


async def open_flag(conn: Conn, event_id: int, patient_id: str, note: str | None) -> tuple[FlagRow, bool]:
    """The open flag of the event: a new one (True), or the one already open (False; the note of
    a second flag is not kept: the first one already asks the same question)."""
    async with conn.cursor(row_factory=class_row(FlagRow)) as cur:
        await cur.execute(
            """
            INSERT INTO privacy_flags (audit_event_id, patient_id, note)
            VALUES (%s, %s, %s)
            ON CONFLICT (audit_event_id) WHERE state = 'open' DO NOTHING
            RETURNING id, state, flagged_at, reviewed_at, outcome_note
            """,
            (event_id, patient_id, note),
        )
        created = await cur.fetchone()
        if created is not None:
            return created, True
        await cur.execute(
            """
            SELECT id, state, flagged_at, reviewed_at, outcome_note FROM privacy_flags
            WHERE audit_event_id = %s AND patient_id = %s AND state = 'open'
            """,
            (event_id, patient_id),
        )
        existing = await cur.fetchone()
    assert existing is not None  # the conflict was with this open flag
    return existing, False


@dataclass(frozen=True, slots=True)
class QueueRow:
    id: int
    rank: int
    patient_id: str
    note: str | None
    flagged_at: datetime
    state: str
    reviewed_by: uuid.UUID | None
    reviewed_at: datetime | None
    outcome_note: str | None
    event_id: int
    event_at: datetime
    actor_id: uuid.UUID | None
    actor_name: str | None
    actor_role: str | None
    action: str
    resource: str
    outcome: str
    break_glass: bool
    break_glass_reason: str | None


_QUEUE_SELECT = f"""
    SELECT pf.id, (pf.state <> 'open')::int AS rank, pf.patient_id, pf.note, pf.flagged_at, pf.state,
           pf.reviewed_by, pf.reviewed_at, pf.outcome_note,
           e.id AS event_id, e.at AS event_at, e.actor_id, u.display_name AS actor_name, e.actor_role,
           e.action, e.resource, e.outcome,
           coalesce(e.detail ->> 'break_glass' = 'true', false) AS break_glass,
           g.reason AS break_glass_reason
    FROM privacy_flags AS pf
    JOIN audit_events AS e ON e.id = pf.audit_event_id
    LEFT JOIN users AS u ON u.id = e.actor_id
    LEFT JOIN break_glass_grants AS g ON g.id = {_GRANT_OF_EVENT} AND g.patient_id = e.patient_id
"""  # noqa: S608 - _GRANT_OF_EVENT is a constant of this module


async def flag_queue(conn: Conn, query: PrivacyFlagQuery, limit: int) -> list[QueueRow]:
    """Open flags first, each group oldest first; after the cursor's (rank, flagged_at, id)."""
    rank, at, after_id = query.after if query.after is not None else (None, None, None)
    async with conn.cursor(row_factory=class_row(QueueRow)) as cur:
        await cur.execute(
            _QUEUE_SELECT
            + """
            WHERE (%(state)s::text IS NULL OR pf.state = %(state)s::text)
              AND (%(rank)s::int IS NULL
                   OR ((pf.state <> 'open')::int, pf.flagged_at, pf.id)
                      > (%(rank)s::int, %(at)s::timestamptz, %(after_id)s::bigint))
            ORDER BY (pf.state <> 'open')::int, pf.flagged_at, pf.id
            LIMIT %(limit)s
            """,
            {"state": query.state, "rank": rank, "at": at, "after_id": after_id, "limit": limit},
        )
        return await cur.fetchall()


async def flag_by_id(conn: Conn, flag_id: int) -> QueueRow | None:
    async with conn.cursor(row_factory=class_row(QueueRow)) as cur:
        await cur.execute(_QUEUE_SELECT + " WHERE pf.id = %s", (flag_id,))
        return await cur.fetchone()


async def review_flag(conn: Conn, flag_id: int, reviewer: uuid.UUID, outcome_note: str) -> bool:
    """Close an open flag; False when it is not open (already reviewed)."""
    cur = await conn.execute(
        """
        UPDATE privacy_flags
        SET state = 'reviewed', reviewed_by = %s, reviewed_at = now(), outcome_note = %s
        WHERE id = %s AND state = 'open'
        """,
        (reviewer, outcome_note, flag_id),
    )
    return cur.rowcount == 1


async def patient_zone(conn: Conn, patient_id: str) -> str | None:
    """The IANA time zone of the patient's care plan (the page shows times in it), if any."""
    cur = await conn.execute(
        "SELECT plan ->> 'timezone' FROM care_plans WHERE patient_id = %s ORDER BY version DESC LIMIT 1",
        (patient_id,),
    )
    row = await cur.fetchone()
    return str(row[0]) if row and row[0] else None
