"""The notification sender against real servers: the stack's SMTP server (infra/smtp.py,
writing to a maildir), a loopback HTTP receiver in the test, TimescaleDB as the alert
service's own login.

Alerts are opened and their notifications queued by the alert service's own code
(`alerts.service.apply_detection`, in this process, as `rpm_alerts`); the sender
(`alerts.notify.OutboxSender`) runs in this process too, with a clock the test may move on
(retry backoffs, quiet hours) instead of sleeping. The stack's alert process, which runs a
sender of its own, is stopped for this module so that every row is this sender's.
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from alerts import service
from alerts.notify import NotifySettings, OutboxSender
from alerts.notify.channels import webhook_client
from alerts.notify.messages import SIGNATURE_HEADER, verify
from alerts.repository import ALERT_COLUMNS, alert_from_row
from core.alert_lifecycle import CANCEL_QUEUED_SQL, Detection, acknowledge
from core.db import create_pool
from infra.stack import Stack
from tests.helpers import create_patient, unique

SECRET = "whsec-" + "k" * 40
SENDER_APP = "rpm-notify-test-sender"  # pg_stat_activity shows when the sender waits on a lock
EVIDENCE = {"value": 83.7, "threshold": 91.5}  # health values that must never leave in a notification


@pytest.fixture(scope="module")
def senders(stack: Stack) -> Iterator[Stack]:
    """The stack's SMTP server, and no other sender than this module's."""
    was_running = stack.pid("alerts") is not None
    if was_running:
        stack.stop(["alerts"])
    stack.start_smtp()
    yield stack
    if was_running:
        stack.start_alerts()


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


def _waiting_on_a_lock(db: psycopg.Connection, application: str) -> bool:
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
        (application,),
    ).fetchone()
    return row is not None and row[0] > 0


# --- the tests --------------------------------------------------------------------------------------
def test_email_lands_in_the_maildir_without_health_values(senders: Stack, db: psycopg.Connection) -> None:
    team = make_team(db, ["email"])
    clock = Clock()

    async def go() -> str:
        async with sender(senders, settings(senders), clock) as send:
            alert_id = await open_alert(send.pool, detection(team.patient, severity="high"), clock)
            await rounds_until(send, lambda: mail_to(senders, team.email))
            return alert_id

    alert_id = asyncio.run(go())
    assert senders.health()["smtp"][0]  # make status: the stack's SMTP server answers
    [message] = mail_to(senders, team.email)
    raw = content(message)
    assert message["To"] == team.email
    assert message["Auto-Submitted"] == "auto-generated"
    assert team.patient in str(message["Subject"])
    assert "HIGH" in str(message["Subject"])
    assert f"https://rpm.example.org/alerts/{alert_id}" in raw
    # ADR 0019: no reading, no threshold, no name, no title in an e-mail.
    for leak in ("83.7", "91.5", f"Test {team.patient}", "Spo2 low (high)", "Dr Notify"):
        assert leak not in raw, leak
    assert outbox(db, alert_id) == [("email", "sent", 1, None)]
    assert history(db, alert_id) == ["opened", "notified"]


def test_webhook_is_signed_with_the_shared_secret(senders: Stack, db: psycopg.Connection) -> None:
    clock = Clock()

    async def go() -> tuple[Team, str, list[Received]]:
        async with Receiver().serving() as hook, sender(senders, settings(senders), clock) as send:
            team = make_team(db, ["webhook"], hook.url)
            alert_id = await open_alert(send.pool, detection(team.patient, severity="critical"), clock)
            await rounds_until(send, lambda: hook.requests)
            return team, alert_id, hook.requests

    team, alert_id, requests = asyncio.run(go())
    [request] = requests
    header = request.headers[SIGNATURE_HEADER.lower()]
    assert verify(SECRET, header, request.body, now=int(time.time()))
    assert not verify("whsec-" + "x" * 40, header, request.body, now=int(time.time()))
    assert not verify(SECRET, header, request.body + b" ", now=int(time.time()))
    body = json.loads(request.body)
    assert (body["alert_id"], body["patient_id"], body["severity"]) == (alert_id, team.patient, "critical")
    assert b"83.7" not in request.body
    assert b"91.5" not in request.body
    assert outbox(db, alert_id) == [("webhook", "sent", 1, None)]


def test_a_failing_receiver_is_retried_with_backoff_and_delivered_once(senders: Stack, db: psycopg.Connection) -> None:
    clock = Clock()
    notify = settings(senders, notify_retry_initial_s=30.0)

    async def go() -> tuple[str, list[Received]]:
        async with Receiver(answers=[500, 200]).serving() as hook, sender(senders, notify, clock) as send:
            team = make_team(db, ["webhook"], hook.url)
            alert_id = await open_alert(send.pool, detection(team.patient), clock)
            await rounds_until(send, lambda: hook.requests)
            # The 500 put it back in the queue, due after the backoff: not before.
            [(_, state, attempts, error)] = outbox(db, alert_id)
            assert (state, attempts) == ("queued", 1)
            assert error == "webhook answered HTTP 500"
            due = db.execute("SELECT due_at FROM notifications WHERE alert_id = %s", (alert_id,)).fetchone()
            assert due is not None
            assert due[0] > clock()
            for _ in range(3):
                await send.run_once()
            assert len(hook.requests) == 1
            clock.offset = timedelta(seconds=31)  # the backoff has passed
            await rounds_until(send, lambda: len(hook.requests) == 2)
            for _ in range(3):
                await send.run_once()
            return alert_id, hook.requests

    alert_id, requests = asyncio.run(go())
    assert [r.status for r in requests] == [500, 200]
    assert len({r.headers["x-rpm-delivery"] for r in requests}) == 1  # one delivery id: receivers deduplicate
    assert outbox(db, alert_id) == [("webhook", "sent", 2, None)]
    assert history(db, alert_id).count("notified") == 1


def test_loopback_is_refused_unless_allowed_by_a_setting(senders: Stack, db: psycopg.Connection) -> None:
    clock = Clock()
    notify = settings(senders, webhook_allow_loopback=False)  # the default

    async def go() -> tuple[str, list[Received]]:
        async with Receiver().serving() as hook, sender(senders, notify, clock) as send:
            team = make_team(db, ["webhook"], hook.url)
            alert_id = await open_alert(send.pool, detection(team.patient), clock)
            await rounds_until(send, lambda: outbox(db, alert_id)[0][1] != "queued")
            return alert_id, hook.requests

    alert_id, requests = asyncio.run(go())
    assert requests == []
    [(_, state, attempts, error)] = outbox(db, alert_id)
    assert (state, attempts) == ("failed", 1)
    assert error is not None
    assert "loopback" in error


def test_an_acknowledged_alerts_notifications_are_never_sent(senders: Stack, db: psycopg.Connection) -> None:
    """Acknowledged before the sender's round: cancelled while queued. Acknowledged after the
    claim (the rows are 'sending', which CANCEL_QUEUED_SQL does not touch) but before the send:
    the re-check under the lock cancels them."""
    clock = Clock()

    async def go() -> tuple[Team, Team, str, str, list[Received]]:
        async with Receiver().serving() as hook, sender(senders, settings(senders), clock) as send:
            early = make_team(db, ["email", "webhook"], hook.url)
            late = make_team(db, ["email", "webhook"], hook.url)
            early_id = await open_alert(send.pool, detection(early.patient), clock)
            async with await AsyncConnection.connect(senders.admin_db_url) as conn, conn.transaction():
                await acknowledge_as_the_api_does(conn, early_id, early.clinician)
            late_id = await open_alert(send.pool, detection(late.patient), clock)
            # The acknowledgement's transaction has changed the alert row and not committed
            # when the sender claims: the claim sees 'open' and leases the rows; the delivery
            # then waits on the alert's lock, and sees 'acknowledged' once it is committed.
            async with await AsyncConnection.connect(senders.admin_db_url) as conn:
                async with conn.transaction():
                    await acknowledge_alert_row(conn, late_id, late.clinician)
                    round_ = asyncio.create_task(send.run_once())
                    deadline = time.monotonic() + 30
                    while not _leased(db, late_id) or not _waiting_on_a_lock(db, SENDER_APP):
                        assert time.monotonic() < deadline, outbox(db, late_id)
                        assert not round_.done(), outbox(db, late_id)
                        await asyncio.sleep(0.05)
                    # CANCEL_QUEUED_SQL finds nothing queued: the rows are the sender's now.
                    cur = await conn.execute(CANCEL_QUEUED_SQL, (late_id,))
                    assert cur.rowcount == 0
                await round_
            for _ in range(3):
                await send.run_once()
            return early, late, early_id, late_id, hook.requests

    early, late, early_id, late_id, requests = asyncio.run(go())
    assert requests == []
    assert mail_to(senders, early.email) == []
    assert mail_to(senders, late.email) == []
    assert [(c, s) for c, s, _, _ in outbox(db, early_id)] == [("email", "cancelled"), ("webhook", "cancelled")]
    assert [(c, s, e) for c, s, _, e in outbox(db, late_id)] == [
        ("email", "cancelled", "alert acknowledged before the send"),
        ("webhook", "cancelled", "alert acknowledged before the send"),
    ]
    assert "notified" not in history(db, early_id) + history(db, late_id)


def test_an_acknowledgement_during_a_send_waits_for_it(senders: Stack, db: psycopg.Connection) -> None:
    """What stays possible: a message already handed over is not unsent. The acknowledgement
    that comes while the receiver holds the answer waits for the delivery to be settled, so the
    alert's history says it was notified and then acknowledged, never the other way round."""
    clock = Clock()

    async def go() -> tuple[str, list[Received]]:
        hook = Receiver()
        async with hook.serving(), sender(senders, settings(senders), clock) as send:
            hook.gate.clear()
            team = make_team(db, ["webhook"], hook.url)
            alert_id = await open_alert(send.pool, detection(team.patient), clock)
            round_ = asyncio.create_task(send.run_once())
            deadline = time.monotonic() + 30
            while not hook.requests:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            application = f"ack-{uuid.uuid4().hex[:8]}"
            async with await AsyncConnection.connect(senders.admin_db_url, application_name=application) as conn:

                async def ack() -> None:
                    async with conn.transaction():
                        await acknowledge_as_the_api_does(conn, alert_id, team.clinician)

                acking = asyncio.create_task(ack())
                while not _waiting_on_a_lock(db, application):
                    assert time.monotonic() < deadline
                    assert not acking.done()
                    await asyncio.sleep(0.05)
                hook.gate.set()  # the receiver answers 200; the sender settles and commits
                await round_
                await acking
            return alert_id, hook.requests

    alert_id, requests = asyncio.run(go())
    assert [r.status for r in requests] == [200]
    assert outbox(db, alert_id) == [("webhook", "sent", 1, None)]
    assert history(db, alert_id) == ["opened", "notified", "acknowledged"]


def test_quiet_hours_delay_a_non_critical_email_but_not_a_critical_one(senders: Stack, db: psycopg.Connection) -> None:
    team = make_team(db, ["email"])
    now = datetime.now(UTC)
    start, end = (now - timedelta(hours=1)).time(), (now + timedelta(hours=1)).time()
    db.execute(
        "UPDATE notification_settings SET quiet_start = %s, quiet_end = %s WHERE user_id = %s",
        (start.replace(microsecond=0), end.replace(microsecond=0), team.clinician),
    )
    clock = Clock()

    async def go() -> tuple[str, str]:
        async with sender(senders, settings(senders), clock) as send:
            high = await open_alert(send.pool, detection(team.patient, "resp_rate_high", "high"), clock)
            critical = await open_alert(send.pool, detection(team.patient, "news2_high", "critical"), clock)
            await rounds_until(send, lambda: mail_to(senders, team.email))
            for _ in range(3):
                await send.run_once()
            [mail] = mail_to(senders, team.email)
            assert "CRITICAL" in str(mail["Subject"])
            assert outbox(db, high)[0][:3] == ("email", "queued", 0)
            clock.offset = timedelta(hours=1, minutes=1)  # the quiet hours are over
            await rounds_until(send, lambda: len(mail_to(senders, team.email)) == 2)
            return high, critical

    high, critical = asyncio.run(go())
    assert outbox(db, critical) == [("email", "sent", 1, None)]
    assert outbox(db, high) == [("email", "sent", 1, None)]


def _leased(db: psycopg.Connection, alert_id: str) -> bool:
    return all(state == "sending" for _, state, _, _ in outbox(db, alert_id))


def test_two_senders_send_each_notification_once(senders: Stack, db: psycopg.Connection) -> None:
    team = make_team(db, ["email"])
    rules = ["spo2_low", "heart_rate_high", "heart_rate_low", "resp_rate_high", "temp_high", "glucose_high"]
    clock = Clock()

    async def go() -> list[str]:
        async with sender(senders, settings(senders), clock) as one, sender(senders, settings(senders), clock) as two:
            ids = [await open_alert(one.pool, detection(team.patient, rule), clock) for rule in rules]
            deadline = time.monotonic() + 60
            while any(state != "sent" for i in ids for _, state, _, _ in outbox(db, i)):
                assert time.monotonic() < deadline, [outbox(db, i) for i in ids]
                await asyncio.gather(one.run_once(), two.run_once())
            return ids

    ids = asyncio.run(go())
    assert len(mail_to(senders, team.email)) == len(rules)
    assert [outbox(db, i) for i in ids] == [[("email", "sent", 1, None)]] * len(rules)


def test_notifications_queued_before_the_patient_withdrew_sharing_are_not_sent(
    senders: Stack, db: psycopg.Connection
) -> None:
    """ADR 0024: the patient withdrew sharing with the care team after tier 0 was queued; the
    re-check under the lock cancels the e-mail and the webhook."""
    clock = Clock()

    async def go() -> tuple[Team, str, list[Received]]:
        async with Receiver().serving() as hook, sender(senders, settings(senders), clock) as send:
            team = make_team(db, ["email", "webhook"], hook.url)
            alert_id = await open_alert(send.pool, detection(team.patient), clock)
            assert [s for _, s, _, _ in outbox(db, alert_id)] == ["queued", "queued"]
            db.execute(  # as the API records the withdrawal of an enrolment grant
                "INSERT INTO consents (patient_id, scope, granted_at, withdrawn_at) "
                "VALUES (%s, 'share_care_team', now() - interval '1 day', now())",
                (team.patient,),
            )
            for _ in range(3):
                await send.run_once()
            return team, alert_id, hook.requests

    team, alert_id, requests = asyncio.run(go())
    assert requests == []
    assert mail_to(senders, team.email) == []
    assert [(c, s, e) for c, s, _, e in outbox(db, alert_id)] == [
        ("email", "cancelled", "the patient no longer shares with the care team"),
        ("webhook", "cancelled", "the patient no longer shares with the care team"),
    ]
    assert "notified" not in history(db, alert_id)
