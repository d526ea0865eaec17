"""The notification sender against real servers (as in test_notify_delivery.py): which queued
notifications are sent, when and how many times. An alert acknowledged before the round or
after the claim sends nothing, an acknowledgement during a send waits for it, quiet hours delay
a non-critical e-mail only, two senders send each notification once, and notifications queued
before the patient withdrew sharing are cancelled."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import AsyncConnection

from core.alert_lifecycle import CANCEL_QUEUED_SQL
from infra.stack import Stack
from tests.alerts.notify_support import (
    SENDER_APP,
    Clock,
    Received,
    Receiver,
    Team,
    acknowledge_alert_row,
    acknowledge_as_the_api_does,
    detection,
    history,
    mail_to,
    make_team,
    open_alert,
    outbox,
    rounds_until,
    sender,
    settings,
    waiting_on_a_lock,
)


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
                    while not _leased(db, late_id) or not waiting_on_a_lock(db, SENDER_APP):
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
                while not waiting_on_a_lock(db, application):
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
