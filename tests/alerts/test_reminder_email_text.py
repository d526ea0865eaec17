"""The reminder e-mail's words come from the patient-text catalogue (core/texts, ADR 0026/0027):
plain data in, an e-mail out; no services needed. The text and HTML parts say the same thing,
in the patient's time zone, with no health detail and no patient id."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest

from alerts.reminders.messages import reminder_email
from alerts.reminders.rules import Reminder
from api.portal.text import catalogue

AT = datetime(2026, 11, 29, 7, 0, tzinfo=UTC)
OSLO = ZoneInfo("Europe/Oslo")
REMINDER = Reminder(
    patient_id="pt-secret-id",
    schedule_key="s1",
    slot_key="k1",
    kind="measurement",
    metric="bp_systolic",
    dose_id=None,
    channel="email",
    follow_up=False,
    scheduled_at=AT,
    window_start=AT,
    window_end=AT + timedelta(hours=1),
    due_at=AT,
    id=42,
)


def parts(reminder: Reminder) -> tuple[str, str, str]:
    message = reminder_email(
        reminder,
        to=Address("Pat", addr_spec="pat@example.org"),
        sender="RPM <reminders@rpm.example>",
        link_base="https://rpm.example/",
        zone=OSLO,
        now=AT,
    )
    assert isinstance(message, EmailMessage)
    plain = message.get_body(preferencelist=("plain",))
    rich = message.get_body(preferencelist=("html",))
    assert plain is not None
    assert rich is not None
    return str(message["Subject"]), plain.get_content(), rich.get_content()


def test_a_measurement_reminder_reads_as_the_catalogue_says() -> None:
    subject, text, rich = parts(REMINDER)
    assert subject == "Reminder: time to check your blood pressure"
    assert text.splitlines() == [
        "It is time to check your blood pressure.",
        "Your device sends the reading to your care team.",
        "It was planned for 08:00. You can still do it until 09:00.",  # Oslo time, not UTC
        "",
        "See your reminders: https://rpm.example/me/reminders",
        "",
        "You can change how and when we remind you on your profile page.",
        "This e-mail has no health details on purpose.",
    ]
    assert "It is time to <strong>check your blood pressure</strong>." in rich
    assert '<a href="https://rpm.example/me/reminders">See your reminders</a>' in rich
    assert "It was planned for 08:00. You can still do it until 09:00." in rich
    assert "pt-secret-id" not in text + rich + subject


@pytest.mark.parametrize(
    ("change", "subject", "first"),
    [
        ({"kind": "dose", "dose_id": "metformin-500", "metric": "medication_taken"}, "take your medicine", "It is"),
        ({"follow_up": True}, "check your blood pressure", "A gentle nudge: it is"),
        ({"metric": "a_metric_without_words"}, "check your reading", "It is"),
    ],
)
def test_dose_follow_up_and_unknown_metric(change: dict[str, object], subject: str, first: str) -> None:
    got_subject, text, rich = parts(replace(REMINDER, **change))
    assert got_subject == f"Reminder: time to {subject}"
    assert text.startswith(f"{first} time to {subject}.\n")
    assert f"{first} time to <strong>{subject}</strong>." in rich
    assert "metformin" not in text + rich + got_subject  # the dose id may name the medicine
    assert ("Your device sends the reading" in text) is (change.get("kind") != "dose")


def test_every_line_of_the_email_is_in_the_one_catalogue() -> None:
    """No e-mail words outside the catalogue: each line is a catalogue text, filled in."""
    _, text, _ = parts(REMINDER)
    texts = catalogue()
    filled = {
        texts["reminder_email.time_to"].format(what=texts["reminder_email.what.bp_systolic"]),
        texts["reminder_email.device_sends"],
        texts["reminder_email.planned"].format(at="08:00", until="09:00"),
        texts["reminder_email.see"].format(link="https://rpm.example/me/reminders"),
        texts["reminder_email.change"],
        texts["reminder_email.no_details"],
    }
    assert {line for line in text.splitlines() if line} == filled
