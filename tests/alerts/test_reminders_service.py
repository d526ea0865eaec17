"""Reminders through the real alert service of the session stack (`python -m alerts`, its own
database login, e-mail to the stack's SMTP server and its maildir), with a fast reminder loop
(`RPM_REMINDERS_INTERVAL_S`). Each test has a patient of its own with a care plan whose one
slot is due a few seconds from now (wall clock: the process's own), and its own address.
"""

from __future__ import annotations

import time as clock
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from core.careplan import CarePlan, MeasurementSchedule, encode_care_plan
from infra.stack import Stack
from tests.alerts.notify_support import content, mail_to
from tests.helpers import create_patient, unique, wait_for


@pytest.fixture(scope="module")
def service(stack: Stack) -> Iterator[Stack]:
    """The stack's alert process, restarted with a reminder round every 0.3 s."""
    was_running = stack.pid("alerts") is not None
    stack.stop(["alerts"])
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RPM_REMINDERS_INTERVAL_S", "0.3")
        stack.start_alerts()
    yield stack
    stack.stop(["alerts"])
    if was_running:
        stack.start_alerts()


def patient_due_in(db: psycopg.Connection, seconds: float, *, channels: list[str]) -> tuple[str, str, datetime]:
    """A patient whose care plan asks for an SpO2 reading `seconds` from now (+/- 1 h), who
    chose these channels; returns (patient, e-mail address, the slot's time)."""
    patient = create_patient(db)
    due = (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0)
    plan = CarePlan(
        patient_id=patient,
        version=1,
        timezone="UTC",
        measurements=(MeasurementSchedule(metric="spo2", times_of_day=(due.time(),), tolerance_s=3600),),
    )
    address = f"{unique('pat')}@example.org"
    db.execute(
        "INSERT INTO patient_preferences (patient_id, email, channels) VALUES (%s, %s, %s)",
        (patient, address, channels),
    )
    db.execute(
        "INSERT INTO care_plans (patient_id, version, plan) VALUES (%s, 1, %s::jsonb)",
        (patient, encode_care_plan(plan).decode()),
    )
    return patient, address, due


def reminders_of(db: psycopg.Connection, patient: str) -> list[dict[str, Any]]:
    cur = db.execute(
        "SELECT channel, follow_up, state, outcome, due_at, sent_at FROM reminders WHERE patient_id = %s "
        "ORDER BY follow_up, channel",
        (patient,),
    )
    names = [c.name for c in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def test_a_due_reminder_is_sent_once_by_each_chosen_channel(service: Stack, db: psycopg.Connection) -> None:
    patient, address, due = patient_due_in(db, 4, channels=["in_app", "email"])
    assert wait_for(lambda: mail_to(service, address), timeout=60), reminders_of(db, patient)
    first = [r for r in reminders_of(db, patient) if not r["follow_up"]]
    assert [(r["channel"], r["state"], r["outcome"]) for r in first] == [
        ("email", "sent", "sent"),
        ("in_app", "sent", "sent"),
    ]
    assert all(r["sent_at"] >= due for r in first)  # not before the slot's time
    clock.sleep(1.5)  # five more rounds of the loop: nothing is sent again
    [message] = mail_to(service, address)
    assert message["Subject"] == "Reminder: time to check your oxygen level"
    text = content(message)
    assert "/me/reminders" in text
    assert patient not in text  # no patient id, no reading in an e-mail
    # Each first reminder planned its one follow-up, half-way to the window's end.
    follow = [r for r in reminders_of(db, patient) if r["follow_up"]]
    assert [(r["channel"], r["state"]) for r in follow] == [("email", "queued"), ("in_app", "queued")]
    assert all(r["due_at"] == due + timedelta(minutes=30) for r in follow)


def test_a_reading_stored_first_cancels_the_reminder(service: Stack, db: psycopg.Connection) -> None:
    patient, address, _ = patient_due_in(db, 3, channels=["in_app", "email"])
    now = datetime.now(UTC)
    db.execute(
        "INSERT INTO observations (patient_id, device_id, metric, ts, value, received_at, seq) "
        "VALUES (%s, 'ox-1', 'spo2', %s, 97, %s, 1)",
        (patient, now, now),
    )

    def settled() -> list[dict[str, Any]]:
        rows = reminders_of(db, patient)
        return rows if rows and all(r["state"] != "queued" for r in rows) else []

    rows = wait_for(settled, timeout=60)
    assert [(r["channel"], r["follow_up"], r["state"], r["outcome"]) for r in rows] == [
        ("email", False, "cancelled", "cancelled_reading_arrived"),
        ("in_app", False, "cancelled", "cancelled_reading_arrived"),
    ]
    assert mail_to(service, address) == []
