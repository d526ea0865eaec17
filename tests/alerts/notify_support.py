"""What the notification sender's tests (test_notify_delivery.py, test_notify_outbox.py) and the
reminder tests share: a loopback webhook receiver, a care team with its channels, the sender
(`alerts.notify.OutboxSender`) in the test's process with a clock the test moves on, alerts
opened by the alert service's own code, and readers of the maildir and the outbox."""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from alerts import service
from alerts.notify import NotifySettings, OutboxSender
from alerts.notify.channels import webhook_client
from alerts.repository import ALERT_COLUMNS, alert_from_row
from core.alert_lifecycle import CANCEL_QUEUED_SQL, Detection, acknowledge
from core.clients.db import create_pool
from infra.stack import Stack
from tests.helpers import create_patient, unique

SECRET = "whsec-" + "k" * 40
SENDER_APP = "rpm-notify-test-sender"  # pg_stat_activity shows when the sender waits on a lock
EVIDENCE = {"value": 83.7, "threshold": 91.5}  # health values that must never leave in a notification


# --- the loopback webhook receiver ---------------------------------------------------------------
@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """A minimal HTTP/1.1 server on 127.0.0.1: records each request and answers with the next
    status of `answers` (the last one repeats); while `gate` is clear it holds the answer."""

    answers: list[int] = field(default_factory=lambda: [200])
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    requests: list[Received] = field(default_factory=list)
    port: int = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in head[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        status = self.answers[min(len(self.requests), len(self.answers) - 1)]
        self.requests.append(Received(headers, body, status))
        try:
            await self.gate.wait()
            writer.write(f"HTTP/1.1 {status} Answer\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode())
            await writer.drain()
        finally:
            writer.close()

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[Receiver]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self.gate.set()
        async with server:
            yield self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/rpm-hook"


# --- set-up: a team, its clinician, a webhook ------------------------------------------------------
@dataclass
class Team:
    id: str
    clinician: str
    email: str
    patient: str


def make_team(db: psycopg.Connection, channels: list[str], webhook_url: str | None = None) -> Team:
    patient = create_patient(db)
    team = db.execute("INSERT INTO care_teams (name) VALUES (%s) RETURNING id", (unique("team"),)).fetchone()
    user = db.execute(
        "INSERT INTO users (username, password_hash, role, display_name) VALUES (%s, 'x', 'clinician', 'Dr Notify') "
        "RETURNING id",
        (unique("dr"),),
    ).fetchone()
    assert team is not None
    assert user is not None
    address = f"{unique('dr')}@clinic.test"
    db.execute("INSERT INTO notification_settings (user_id, email) VALUES (%s, %s)", (user[0], address))
    db.execute("INSERT INTO care_team_members (care_team_id, user_id) VALUES (%s, %s)", (team[0], user[0]))
    db.execute("INSERT INTO care_team_patients (care_team_id, patient_id) VALUES (%s, %s)", (team[0], patient))
    db.execute(
        "INSERT INTO escalation_tiers (care_team_id, tier, after_s, min_severity, channels) "
        "VALUES (%s, 0, 0, 'info', %s)",
        (team[0], channels),
    )
    if webhook_url is not None:
        db.execute(
            "INSERT INTO webhooks (care_team_id, url, secret) VALUES (%s, %s, %s)", (team[0], webhook_url, SECRET)
        )
    return Team(str(team[0]), str(user[0]), address, patient)


def detection(patient: str, rule: str = "spo2_low", severity: str = "high") -> Detection:
    now = datetime.now(UTC)
    return Detection(
        detection_id=str(uuid.uuid4()),
        patient_id=patient,
        rule=rule,
        severity=severity,
        kind="raise",
        detected_at=now,
        evidence=EVIDENCE,
    )


# --- the sender in this process ----------------------------------------------------------------------
class Clock:
    """The real clock, plus an offset the test moves on."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def settings(stack: Stack, **overrides: Any) -> NotifySettings:
    values: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": stack.ports.smtp,
        "notify_link_base": "https://rpm.example.org",
        "notify_retry_initial_s": 30.0,
        "notify_retry_max_s": 120.0,
        "webhook_allowed_hosts": "127.0.0.1",
        "webhook_require_https": False,
        "webhook_allow_loopback": True,
        **overrides,
    }
    return NotifySettings(**values)


@asynccontextmanager
async def sender(stack: Stack, notify: NotifySettings, clock: Clock) -> AsyncIterator[OutboxSender]:
    pool = create_pool(f"{stack.db_url('alerts')}?application_name={SENDER_APP}", 1, 4, name="notify-test")
    await pool.open(wait=True)
    try:
        async with webhook_client(notify) as client:
            yield OutboxSender(pool, notify, client, clock)
    finally:
        await pool.close()


async def open_alert(pool: AsyncConnectionPool[Any], found: Detection, clock: Clock) -> str:
    """The alert service's own transaction for one detection (opens and queues tier 0)."""
    async with pool.connection() as conn, conn.transaction():
        applied = await service.apply_detection(conn, found, clock())
    assert applied.outcome == "opened"
    assert applied.alert is not None
    return applied.alert.id


async def acknowledge_as_the_api_does(conn: AsyncConnection[Any], alert_id: str, user_id: str) -> None:
    """The lifecycle rule and its SQL, in the caller's transaction."""
    await acknowledge_alert_row(conn, alert_id, user_id)
    await conn.execute(CANCEL_QUEUED_SQL, (alert_id,))


async def acknowledge_alert_row(conn: AsyncConnection[Any], alert_id: str, user_id: str) -> None:
    """The first half of an acknowledgement: the alert row and its history row."""
    cur = await conn.execute(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = %s FOR UPDATE", (alert_id,))  # noqa: S608
    row = await cur.fetchone()
    assert row is not None
    t = acknowledge(alert_from_row(row), user_id, datetime.now(UTC))
    a = t.alert
    await conn.execute(
        "UPDATE alerts SET state = %s, acknowledged_at = %s, acknowledged_by = %s, snoozed_until = %s, "
        "next_escalation_at = %s, updated_at = %s WHERE id = %s",
        (a.state, a.acknowledged_at, a.acknowledged_by, a.snoozed_until, a.next_escalation_at, a.updated_at, a.id),
    )
    for e in t.events:
        await conn.execute(
            "INSERT INTO alert_events (alert_id, at, actor_id, from_state, to_state, patient_id, kind, detail) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (a.id, e.at, e.actor_id, e.from_state, e.to_state, a.patient_id, e.kind, Jsonb(dict(e.detail))),
        )
    assert t.cancel_queued


# --- reading the results --------------------------------------------------------------------------
def mail_to(stack: Stack, address: str) -> list[email.message.Message]:
    found = []
    for path in sorted((stack.maildir / "new").iterdir()):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if message["X-RPM-Envelope-To"] == address:
            found.append(message)
    return found


def content(message: email.message.Message) -> str:
    """Every header and every part of the message, decoded (quoted-printable, base64)."""
    parts = [f"{k}: {v}" for k, v in message.items()]
    for part in message.walk():
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            parts.append(payload.decode(part.get_content_charset() or "utf-8"))
    return "\n".join(parts)


def outbox(db: psycopg.Connection, alert_id: str) -> list[tuple[str, str, int, str | None]]:
    rows = db.execute(
        "SELECT channel, state, attempts, last_error FROM notifications WHERE alert_id = %s ORDER BY channel",
        (alert_id,),
    ).fetchall()
    return [(r[0], r[1], int(r[2]), r[3]) for r in rows]


def history(db: psycopg.Connection, alert_id: str) -> list[str]:
    return [r[0] for r in db.execute("SELECT kind FROM alert_events WHERE alert_id = %s ORDER BY id", (alert_id,))]


async def rounds_until(send: OutboxSender, done: Any, within_s: float = 30.0) -> None:
    """Run sender rounds until `done()` holds (generous wait; never a timing assertion)."""
    deadline = time.monotonic() + within_s
    while not done():
        assert time.monotonic() < deadline, "the sender did not get there"
        await send.run_once()
        await asyncio.sleep(0.05)


def waiting_on_a_lock(db: psycopg.Connection, application: str) -> bool:
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
        (application,),
    ).fetchone()
    return row is not None and row[0] > 0
