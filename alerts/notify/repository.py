"""All SQL of the notification sender: claim due rows of the outbox (`notifications`), lock
each one with its alert for the re-check at send time, settle it, and write the alert's
history row when one was sent. The caller owns the transaction (claim in one; lock, deliver
and settle each notification in its own)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

# Due rows, oldest first; a row another sender holds is skipped, not waited for. One query
# per state so that each uses its partial index (queued: 0006, sending: 0008).
_CLAIM: Final = """
SELECT n.id, n.alert_id::text, n.tier, n.channel, n.recipient, n.attempts,
       a.patient_id, a.rule, a.severity, a.state, a.opened_at, a.snoozed_until,
       w.url, w.secret, w.enabled
FROM notifications n
JOIN alerts a ON a.id = n.alert_id
LEFT JOIN webhooks w ON n.channel = 'webhook' AND w.id::text = n.recipient
WHERE n.state = '{state}' AND n.due_at <= %(now)s
ORDER BY n.due_at
LIMIT %(limit)s
FOR UPDATE OF n SKIP LOCKED
"""
CLAIM_QUEUED: Final = _CLAIM.format(state="queued")
# A row left 'sending' past its lease: its sender died mid-delivery.
CLAIM_ABANDONED: Final = _CLAIM.format(state="sending")


@dataclass(frozen=True)
class OutboxRow:
    id: int
    alert_id: str
    tier: int
    channel: str
    recipient: str
    attempts: int  # attempts made before this claim
    patient_id: str
    rule: str
    severity: str
    alert_state: str
    opened_at: datetime
    snoozed_until: datetime | None
    webhook_url: str | None
    webhook_secret: str | None
    webhook_enabled: bool | None
    abandoned: bool  # was 'sending' (lease expired), not 'queued'


async def claim(conn: AsyncConnection[Any], now: datetime, limit: int) -> list[OutboxRow]:
    rows: list[OutboxRow] = []
    for query, abandoned in ((CLAIM_ABANDONED, True), (CLAIM_QUEUED, False)):
        if len(rows) >= limit:
            break
        cur = await conn.execute(query, {"now": now, "limit": limit - len(rows)})
        for r in await cur.fetchall():
            values: tuple[Any, ...] = (*r, abandoned)
            rows.append(OutboxRow(*values))
    return rows


async def cancel(conn: AsyncConnection[Any], notification_id: int) -> None:
    await conn.execute("UPDATE notifications SET state = 'cancelled' WHERE id = %s", (notification_id,))


async def defer(conn: AsyncConnection[Any], notification_id: int, until: datetime) -> None:
    await conn.execute("UPDATE notifications SET state = 'queued', due_at = %s WHERE id = %s", (until, notification_id))


async def start_attempt(conn: AsyncConnection[Any], notification_id: int, lease_until: datetime) -> int:
    """State 'sending' with a lease (due_at = when another sender may take it); returns the
    attempt's number."""
    cur = await conn.execute(
        "UPDATE notifications SET state = 'sending', attempts = attempts + 1, due_at = %s WHERE id = %s "
        "RETURNING attempts",
        (lease_until, notification_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


_OURS: Final = "id = %(id)s AND state = 'sending' AND attempts = %(attempt)s"

# The re-check at send time. The notification row is locked FOR UPDATE (no other sender may
# take it over while we send, whatever its lease says) and the alert FOR SHARE: an
# acknowledgement, snooze or resolution (an UPDATE of the alert row) that has not committed
# yet is waited for and then seen; one that comes later waits until this transaction, which
# holds the delivery and its settlement, commits. `shared`: whether the patient still shares
# with their care team (ADR 0024; the view of migration 0015): a notification queued before a
# withdrawal is not sent after it.
_LOCK_FOR_SEND: Final = """
SELECT a.state, a.snoozed_until,
       EXISTS (SELECT 1 FROM care_team_patients_shared s WHERE s.patient_id = a.patient_id)
FROM notifications n
JOIN alerts a ON a.id = n.alert_id
WHERE n.id = %(id)s AND n.state = 'sending' AND n.attempts = %(attempt)s
FOR UPDATE OF n
FOR SHARE OF a
"""


@dataclass(frozen=True)
class AlertNow:
    """The alert's state as the sender sees it under the lock, just before a delivery."""

    state: str
    snoozed_until: datetime | None
    shared: bool = True  # the patient shares with their care team (ADR 0024)


async def lock_for_send(conn: AsyncConnection[Any], notification_id: int, attempt: int) -> AlertNow | None:
    """Lock the notification (still this attempt's) and its alert until the caller's
    transaction ends; None when the row is no longer this attempt's."""
    cur = await conn.execute(_LOCK_FOR_SEND, {"id": notification_id, "attempt": attempt})
    row = await cur.fetchone()
    return None if row is None else AlertNow(str(row[0]), row[1], bool(row[2]))


async def cancel_attempt(conn: AsyncConnection[Any], notification_id: int, attempt: int, why: str) -> bool:
    """Cancelled at send time (the alert was acknowledged or resolved after the claim)."""
    cur = await conn.execute(
        f"UPDATE notifications SET state = 'cancelled', last_error = %(why)s WHERE {_OURS}",  # noqa: S608 - constant
        {"id": notification_id, "attempt": attempt, "why": why},
    )
    return cur.rowcount == 1


async def defer_attempt(conn: AsyncConnection[Any], notification_id: int, attempt: int, until: datetime) -> bool:
    """Queued again for the end of a snooze found at send time; the attempt was not made."""
    cur = await conn.execute(
        f"UPDATE notifications SET state = 'queued', due_at = %(until)s, attempts = attempts - 1 WHERE {_OURS}",  # noqa: S608 - constant
        {"id": notification_id, "attempt": attempt, "until": until},
    )
    return cur.rowcount == 1


async def mark_sent(conn: AsyncConnection[Any], row: OutboxRow, attempt: int, now: datetime) -> bool:
    """Sent, and the alert's history says so (kind 'notified', no actor: the platform). False
    when the row is no longer this attempt's (its lease expired and another sender took it)."""
    cur = await conn.execute(
        f"UPDATE notifications SET state = 'sent', sent_at = %(now)s, last_error = NULL WHERE {_OURS}",  # noqa: S608 - constant
        {"id": row.id, "attempt": attempt, "now": now},
    )
    if cur.rowcount != 1:
        return False
    await conn.execute(
        "INSERT INTO alert_events (alert_id, patient_id, at, from_state, to_state, kind, detail) "
        "VALUES (%s, %s, %s, %s, %s, 'notified', %s)",
        (
            row.alert_id,
            row.patient_id,
            now,
            row.alert_state,
            row.alert_state,
            Jsonb(
                {
                    "channel": row.channel,
                    "recipient": row.recipient,
                    "tier": row.tier,
                    "notification_id": row.id,
                    "attempts": attempt,
                }
            ),
        ),
    )
    return True


async def mark_retry(conn: AsyncConnection[Any], row: OutboxRow, attempt: int, due_at: datetime, error: str) -> bool:
    cur = await conn.execute(
        f"UPDATE notifications SET state = 'queued', due_at = %(due)s, last_error = %(error)s WHERE {_OURS}",  # noqa: S608 - constant
        {"id": row.id, "attempt": attempt, "due": due_at, "error": error},
    )
    return cur.rowcount == 1


async def mark_failed(conn: AsyncConnection[Any], notification_id: int, attempt: int | None, error: str) -> bool:
    """Failed for good. `attempt` None: decided at claim time, before any attempt of ours."""
    if attempt is None:
        cur = await conn.execute(
            "UPDATE notifications SET state = 'failed', last_error = %s WHERE id = %s", (error, notification_id)
        )
    else:
        cur = await conn.execute(
            f"UPDATE notifications SET state = 'failed', last_error = %(error)s WHERE {_OURS}",  # noqa: S608 - constant
            {"id": notification_id, "attempt": attempt, "error": error},
        )
    return cur.rowcount == 1
