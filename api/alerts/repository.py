"""All SQL of the clinician's alerts (grants: core/migrations/0009_api_alerts.sql).

Functions run in the caller's transaction and never commit. The caller's scope is given as
`user_id` (a clinician: the patients of their care teams) or None (an admin: every patient).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from api.alerts.schemas import AlertEventRead, AlertRead, Cursor, InboxQuery
from api.db import Conn
from core.alert_lifecycle import CANCEL_QUEUED_SQL, Alert, AlertEvent

ALERT_COLUMNS: Final = (
    "id, patient_id, rule, severity, state, title, opened_at, updated_at, evidence, repeat_count, "
    "last_triggered_at, acknowledged_at, acknowledged_by, assigned_to, snoozed_until, resolved_at, resolved_by, "
    "disposition, resolution_note, escalation_tier, next_escalation_at, detection_ids"
)
EVENT_COLUMNS: Final = "id, alert_id, kind, at, actor_id, from_state, to_state, note, detail"
# Most severe first. The same expression is in the inbox index of 0009: keep them equal.
SEVERITY_RANK: Final = (
    "(CASE severity WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 WHEN 'low' THEN 1 ELSE 0 END)"
)
RANKS: Final = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
_TEAM_PATIENTS: Final = (
    "SELECT p.patient_id FROM care_team_members m JOIN care_team_patients_shared p ON p.care_team_id = m.care_team_id "
    "WHERE m.user_id = %(user_id)s"
)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def alert_from_row(row: Sequence[Any]) -> Alert:
    """A row selected with ALERT_COLUMNS as the lifecycle's plain data."""
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
        acknowledged_by=_text(row[12]),
        assigned_to=_text(row[13]),
        snoozed_until=row[14],
        resolved_at=row[15],
        resolved_by=_text(row[16]),
        disposition=row[17],
        resolution_note=row[18],
        escalation_tier=row[19],
        next_escalation_at=row[20],
        detection_ids=tuple(row[21] or ()),
    )


def alert_read(alert: Alert) -> AlertRead:
    def uid(value: str | None) -> uuid.UUID | None:
        return None if value is None else uuid.UUID(value)

    return AlertRead(
        id=uuid.UUID(alert.id),
        patient_id=alert.patient_id,
        rule=alert.rule,
        severity=str(alert.severity),
        state=alert.state,
        title=alert.title,
        opened_at=alert.opened_at,
        updated_at=alert.updated_at,
        repeat_count=alert.repeat_count,
        last_triggered_at=alert.last_triggered_at,
        acknowledged_at=alert.acknowledged_at,
        acknowledged_by=uid(alert.acknowledged_by),
        assigned_to=uid(alert.assigned_to),
        snoozed_until=alert.snoozed_until,
        resolved_at=alert.resolved_at,
        resolved_by=uid(alert.resolved_by),
        disposition=alert.disposition,
        resolution_note=alert.resolution_note,
        escalation_tier=alert.escalation_tier,
        evidence=dict(alert.evidence),
    )


async def alert_patient(conn: Conn, alert_id: uuid.UUID) -> str | None:
    """The patient of an alert (None: no such alert), to check access before anything else."""
    cur = await conn.execute("SELECT patient_id FROM alerts WHERE id = %s", (alert_id,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def get_alert(conn: Conn, alert_id: uuid.UUID, *, lock: bool = False) -> Alert | None:
    query = f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = %s" + (" FOR UPDATE" if lock else "")  # noqa: S608
    cur = await conn.execute(query, (alert_id,))
    row = await cur.fetchone()
    return None if row is None else alert_from_row(row)


async def history(conn: Conn, alert_id: uuid.UUID) -> list[AlertEventRead]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {EVENT_COLUMNS} FROM alert_events WHERE alert_id = %s ORDER BY id",  # noqa: S608
            (alert_id,),
        )
        return [AlertEventRead.model_validate(row) for row in await cur.fetchall()]


async def list_alerts(conn: Conn, user_id: uuid.UUID | None, query: InboxQuery, limit: int) -> list[Alert]:
    """One page of the inbox: `limit` alerts after the cursor, in the query's order."""
    where = ["state = ANY(%(states)s)"]
    if "resolved" not in query.states:
        where.append("state <> 'resolved'")  # the predicate of the inbox index (0009)
    params: dict[str, Any] = {"states": list(query.states), "limit": limit}
    if user_id is not None:
        where.append(f"patient_id IN ({_TEAM_PATIENTS})")
        params["user_id"] = user_id
    if query.severities:
        where.append("severity = ANY(%(severities)s)")
        params["severities"] = list(query.severities)
    if query.rule is not None:
        where.append("rule = %(rule)s")
        params["rule"] = query.rule
    if query.patient_id is not None:
        where.append("patient_id = %(patient_id)s")
        params["patient_id"] = query.patient_id
    if query.assignee == "none":
        where.append("assigned_to IS NULL")
    elif query.assignee is not None:
        where.append("assigned_to = %(assignee)s")
        params["assignee"] = query.assignee
    if query.sort == "severity":
        order = f"{SEVERITY_RANK} DESC, opened_at, id"
        if query.after is not None:
            where.append(
                f"({SEVERITY_RANK} < %(rank)s OR ({SEVERITY_RANK} = %(rank)s AND (opened_at, id) > (%(at)s, %(id)s)))"
            )
    else:
        order = "opened_at, id"
        if query.after is not None:
            where.append("(opened_at, id) > (%(at)s, %(id)s)")
    if query.after is not None:
        params.update(rank=query.after.rank, at=query.after.opened_at, id=query.after.id)
    text = f"SELECT {ALERT_COLUMNS} FROM alerts WHERE {' AND '.join(where)} ORDER BY {order} LIMIT %(limit)s"  # noqa: S608
    cur = await conn.execute(text, params)
    return [alert_from_row(row) for row in await cur.fetchall()]


def cursor_of(alert: Alert, sort: str) -> Cursor:
    return Cursor(
        "severity" if sort == "severity" else "age", RANKS[str(alert.severity)], alert.opened_at, uuid.UUID(alert.id)
    )


async def update_alert(conn: Conn, a: Alert) -> None:
    """Write what a person's move changes (the alert service writes the rest)."""
    await conn.execute(
        "UPDATE alerts SET state = %s, updated_at = %s, acknowledged_at = %s, acknowledged_by = %s, "
        "assigned_to = %s, snoozed_until = %s, resolved_at = %s, resolved_by = %s, disposition = %s, "
        "resolution_note = %s, next_escalation_at = %s WHERE id = %s",
        (
            a.state,
            a.updated_at,
            a.acknowledged_at,
            a.acknowledged_by,
            a.assigned_to,
            a.snoozed_until,
            a.resolved_at,
            a.resolved_by,
            a.disposition,
            a.resolution_note,
            a.next_escalation_at,
            a.id,
        ),
    )


async def insert_events(conn: Conn, alert: Alert, events: Iterable[AlertEvent]) -> None:
    rows = [
        (alert.id, e.at, e.actor_id, e.from_state, e.to_state, e.note, alert.patient_id, e.kind, Jsonb(dict(e.detail)))
        for e in events
    ]
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO alert_events (alert_id, at, actor_id, from_state, to_state, note, patient_id, kind, "
                "detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )


async def cancel_queued(conn: Conn, alert_id: str) -> int:
    """Cancel what is still queued for the alert on every channel; how many rows."""
    cur = await conn.execute(CANCEL_QUEUED_SQL, (alert_id,))
    return max(cur.rowcount, 0)


async def is_team_member(conn: Conn, patient_id: str, user_id: uuid.UUID) -> bool:
    """True when the user is an enabled clinician or admin of one of the patient's care teams."""
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM care_team_members m "
        "JOIN care_team_patients_shared p ON p.care_team_id = m.care_team_id JOIN users u ON u.id = m.user_id "
        "WHERE p.patient_id = %s AND m.user_id = %s AND NOT u.disabled AND u.role IN ('clinician', 'admin'))",
        (patient_id, user_id),
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def dispositions_by_rule(conn: Conn, user_id: uuid.UUID | None, since: datetime) -> list[tuple[str, str, int]]:
    """(rule, disposition, count) of the alerts in scope resolved since then."""
    scope = "" if user_id is None else f" AND patient_id IN ({_TEAM_PATIENTS})"
    cur = await conn.execute(
        "SELECT rule, disposition, count(*) FROM alerts WHERE state = 'resolved' "  # noqa: S608
        f"AND resolved_at >= %(since)s{scope} GROUP BY rule, disposition ORDER BY rule, disposition",
        {"since": since, "user_id": user_id},
    )
    return [(r[0], r[1], int(r[2])) for r in await cur.fetchall()]


async def opened_and_patients(conn: Conn, user_id: uuid.UUID | None, since: datetime) -> tuple[int, int]:
    """(alerts in scope opened since then, patients in scope)."""
    if user_id is None:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM alerts WHERE opened_at >= %(since)s), (SELECT count(*) FROM patients)",
            {"since": since},
        )
    else:
        cur = await conn.execute(
            f"SELECT (SELECT count(*) FROM alerts WHERE opened_at >= %(since)s AND patient_id IN ({_TEAM_PATIENTS})), "  # noqa: S608
            f"(SELECT count(DISTINCT patient_id) FROM ({_TEAM_PATIENTS}) AS t)",
            {"since": since, "user_id": user_id},
        )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def team_patients(conn: Conn, user_id: uuid.UUID) -> frozenset[str]:
    cur = await conn.execute(_TEAM_PATIENTS.replace("%(user_id)s", "%s"), (user_id,))
    return frozenset(str(r[0]) for r in await cur.fetchall())


STREAM_COLUMNS: Final = (
    "e.id, e.alert_id, e.patient_id, e.kind, e.at, e.actor_id, e.from_state, e.to_state, e.detail, "
    "a.rule, a.severity, a.state, a.title"
)


async def stream_event(conn: Conn, event_id: int) -> dict[str, Any] | None:
    """One history row with its alert's summary, as the stream sends it."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {STREAM_COLUMNS} FROM alert_events e JOIN alerts a ON a.id = e.alert_id WHERE e.id = %s",  # noqa: S608
            (event_id,),
        )
        return await cur.fetchone()


async def stream_events_after(conn: Conn, user_id: uuid.UUID | None, after: int, limit: int) -> list[dict[str, Any]]:
    """History rows in scope with an id above `after`, oldest first (the replay of a resume)."""
    scope = "" if user_id is None else f" AND e.patient_id IN ({_TEAM_PATIENTS})"
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {STREAM_COLUMNS} FROM alert_events e JOIN alerts a ON a.id = e.alert_id "  # noqa: S608
            f"WHERE e.id > %(after)s{scope} ORDER BY e.id LIMIT %(limit)s",
            {"after": after, "user_id": user_id, "limit": limit},
        )
        return await cur.fetchall()


async def last_event_id(conn: Conn) -> int:
    """The newest history row's id (0: none yet)."""
    cur = await conn.execute("SELECT coalesce(max(id), 0) FROM alert_events")
    row = await cur.fetchone()
    return int(row[0]) if row else 0
