"""The reminder loop (alerts/reminders/loop.py) round by round with a clock the test sets,
against the real database (as the alert service's own login) and the stack's SMTP server and
maildir: a first reminder and its one follow-up each sent once per channel, outcomes settled
after the window; quiet hours move a reminder to their end or skip it. The stack's alert
process is stopped for this module so that every row is this loop's."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time
from typing import Any

import psycopg

from alerts.reminders import LoopSettings, ReminderLoop
from core.careplan import CarePlan, MeasurementSchedule, encode_care_plan
from core.clients.db import create_pool
from infra.stack import Stack
from tests.alerts.notify_support import mail_to
from tests.helpers import create_patient, unique

DAY = datetime(2026, 1, 15, tzinfo=UTC)


def at(hour: int, minute: int = 0) -> datetime:
    return DAY.replace(hour=hour, minute=minute)


def patient_with(
    db: psycopg.Connection, *, channels: list[str], quiet: tuple[time, time] | None = None
) -> tuple[str, str]:
    """A patient with an SpO2 check at 08:00 UTC (+/- 1 h) and these choices; (patient, address)."""
    patient = create_patient(db)
    plan = CarePlan(
        patient_id=patient,
        version=1,
        measurements=(MeasurementSchedule(metric="spo2", times_of_day=(time(8),), tolerance_s=3600),),
    )
    address = f"{unique('pat')}@example.org"
    db.execute(
        "INSERT INTO patient_preferences (patient_id, email, channels, quiet_start, quiet_end, time_zone) "
        "VALUES (%s, %s, %s, %s, %s, 'UTC')",
        (patient, address, channels, quiet[0] if quiet else None, quiet[1] if quiet else None),
    )
    db.execute(
        "INSERT INTO care_plans (patient_id, version, plan) VALUES (%s, 1, %s::jsonb)",
        (patient, encode_care_plan(plan).decode()),
    )
    return patient, address


def rows(db: psycopg.Connection, patient: str) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT channel, follow_up, state, outcome, due_at FROM reminders "
        "WHERE patient_id = %s AND slot_key = '2026-01-15T08:00' ORDER BY follow_up, channel",
        (patient,),
    ).fetchall()


def run_rounds(stack: Stack, *times: datetime) -> None:
    """One round of the loop at each of these times, in order."""

    async def go() -> None:
        now = [times[0]]
        settings = LoopSettings(smtp_host="127.0.0.1", smtp_port=stack.ports.smtp)
        pool = create_pool(stack.db_url("alerts"), 1, 2, name="reminders-test")
        await pool.open(wait=True)
        try:
            loop = ReminderLoop(pool, settings, lambda: now[0])
            for t in times:
                now[0] = t
                await loop.run_once()
        finally:
            await pool.close()

    asyncio.run(go())


def test_first_and_follow_up_once_per_channel_then_the_outcome(senders: Stack, db: psycopg.Connection) -> None:
    patient, address = patient_with(db, channels=["in_app", "email"])
    run_rounds(senders, at(7))
    assert [(c, f, s) for c, f, s, _, _ in rows(db, patient)] == [
        ("email", False, "queued"),
        ("in_app", False, "queued"),
    ]
    assert mail_to(senders, address) == []

    run_rounds(senders, at(8), at(8, 5), at(8, 29))
    assert [(c, f, s, o, d) for c, f, s, o, d in rows(db, patient)] == [
        ("email", False, "sent", "sent", at(8)),
        ("in_app", False, "sent", "sent", at(8)),
        ("email", True, "queued", None, at(8, 30)),
        ("in_app", True, "queued", None, at(8, 30)),
    ]
    assert len(mail_to(senders, address)) == 1

    run_rounds(senders, at(8, 30), at(8, 35))
    assert [(f, s) for _, f, s, _, _ in rows(db, patient)] == [(False, "sent")] * 2 + [(True, "sent")] * 2
    messages = mail_to(senders, address)
    assert len(messages) == 2  # the first and the one follow-up, nothing more
    assert sorted(str(m["Subject"]) for m in messages) == ["Reminder: time to check your oxygen level"] * 2

    # The reading comes after the reminders; once the window closed (09:00) and the grace
    # passed, every sent reminder records that it was followed by a reading.
    db.execute(
        "INSERT INTO observations (patient_id, device_id, metric, ts, value, received_at, seq) "
        "VALUES (%s, 'ox-1', 'spo2', %s, 96, %s, 1)",
        (patient, at(8, 40), at(8, 40)),
    )
    run_rounds(senders, at(9, 1))
    assert {o for _, _, _, o, _ in rows(db, patient)} == {"sent"}  # still inside the grace
    run_rounds(senders, at(9, 6), at(10))
    assert [o for _, _, _, o, _ in rows(db, patient)] == ["reading_after"] * 4
    assert len(mail_to(senders, address)) == 2


def test_quiet_hours_move_a_reminder_to_their_end_or_skip_it(senders: Stack, db: psycopg.Connection) -> None:
    early, early_address = patient_with(db, channels=["in_app", "email"], quiet=(time(22), time(8, 20)))
    late, late_address = patient_with(db, channels=["in_app", "email"], quiet=(time(22), time(9, 30)))
    run_rounds(senders, at(7), at(8), at(8, 10))
    assert [(f, s, d) for _, f, s, _, d in rows(db, early)] == [(False, "queued", at(8, 20))] * 2
    assert mail_to(senders, early_address) == []
    # Quiet until 09:30 outlasts the window (09:00): skipped, never sent.
    assert [(s, o) for _, _, s, o, _ in rows(db, late)] == [("skipped", "skipped_quiet_hours")] * 2

    run_rounds(senders, at(8, 20), at(8, 40), at(8, 45))
    got = [(f, s, o, d) for _, f, s, o, d in rows(db, early)]
    assert got == [
        (False, "sent", "sent", at(8, 20)),
        (False, "sent", "sent", at(8, 20)),
        (True, "sent", "sent", at(8, 40)),  # half-way from 08:20 to 09:00
        (True, "sent", "sent", at(8, 40)),
    ]
    assert len(mail_to(senders, early_address)) == 2
    assert mail_to(senders, late_address) == []
