"""The notification sender against real servers: the stack's SMTP server (infra/smtp.py,
writing to a maildir), a loopback HTTP receiver in the test, TimescaleDB as the alert
service's own login.

Alerts are opened and their notifications queued by the alert service's own code
(`alerts.service.apply_detection`, in this process, as `rpm_alerts`); the sender
(`alerts.notify.OutboxSender`) runs in this process too, with a clock the test may move on
(retry backoffs, quiet hours) instead of sleeping. The stack's alert process, which runs a
sender of its own, is stopped for this module so that every row is this sender's (the
`senders` fixture of conftest.py).

Here: each channel delivers (e-mail without health values, a signed webhook, retries with
backoff, loopback refused). Which notifications are sent, when and how many times (after an
acknowledgement, in quiet hours, with two senders, after sharing is withdrawn) is in
test_notify_outbox.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import psycopg

from alerts.notify.messages import SIGNATURE_HEADER, verify
from infra.stack import Stack
from tests.alerts.notify_support import (
    SECRET,
    Clock,
    Received,
    Receiver,
    Team,
    content,
    detection,
    history,
    mail_to,
    make_team,
    open_alert,
    outbox,
    rounds_until,
    sender,
    settings,
)


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
