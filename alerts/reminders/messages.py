"""The reminder e-mail (plain data in, an `EmailMessage` out; no I/O).

Privacy as for alert e-mail (ADR 0019): e-mail is not a secure channel, so a reminder names
the kind of measurement or that a medicine is due, and the time, and nothing else: no
reading, no name of a medicine (the dose id may name it), no patient id. Short, plain words.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Final
from zoneinfo import ZoneInfo

from alerts.reminders.rules import Reminder

METRIC_WORDS: Final[dict[str, str]] = {
    "heart_rate": "heart rate",
    "resp_rate": "breathing rate",
    "spo2": "oxygen level",
    "body_temp": "temperature",
    "bp_systolic": "blood pressure",
    "bp_diastolic": "blood pressure",
    "body_weight": "weight",
    "glucose": "blood sugar",
}


def what_in_words(reminder: Reminder) -> str:
    """'check your blood pressure' / 'take your medicine'."""
    if reminder.kind == "dose":
        return "take your medicine"
    return f"check your {METRIC_WORDS.get(reminder.metric, 'reading')}"


def reminder_email(
    reminder: Reminder, *, to: Address, sender: str, link_base: str, zone: ZoneInfo, now: datetime
) -> EmailMessage:
    what = what_in_words(reminder)
    at = reminder.scheduled_at.astimezone(zone).strftime("%H:%M")
    window_end = reminder.window_end.astimezone(zone).strftime("%H:%M")
    link = f"{link_base.rstrip('/')}/me/reminders"
    first = "A gentle nudge: it" if reminder.follow_up else "It"
    msg = EmailMessage()
    msg["Subject"] = f"Reminder: time to {what}"
    msg["From"] = sender
    msg["To"] = to
    msg["Date"] = format_datetime(now.astimezone(UTC))
    msg["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2] or "localhost")
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies
    msg["X-RPM-Reminder-Id"] = str(reminder.id)
    lines = [f"{first} is time to {what}."]
    if reminder.kind == "measurement":
        lines.append("Your device sends the reading to your care team.")
    lines += [
        f"It was planned for {at}. You can still do it until {window_end}.",
        "",
        f"See your reminders: {link}",
        "",
        "You can change how and when we remind you on your profile page.",
        "This e-mail has no health details on purpose.",
    ]
    text = "\n".join(lines) + "\n"
    msg.set_content(text)
    e = html.escape
    msg.add_alternative(
        "<!doctype html><html><body>"
        f"<p>{e(first)} is time to <strong>{e(what)}</strong>.</p>"
        f"<p>It was planned for {e(at)}. You can still do it until {e(window_end)}.</p>"
        f'<p><a href="{e(link)}">See your reminders</a></p>'
        "<p>You can change how and when we remind you on your profile page. "
        "This e-mail has no health details on purpose.</p>"
        "</body></html>",
        subtype="html",
    )
    return msg
