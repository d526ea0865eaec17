"""The reminder e-mail (plain data in, an `EmailMessage` out; no I/O).

Privacy as for alert e-mail (ADR 0019): e-mail is not a secure channel, so a reminder names
the kind of measurement or that a medicine is due, and the time, and nothing else: no
reading, no name of a medicine (the dose id may name it), no patient id. Short, plain words.

The words are in the patient-text catalogue (core/texts/text_reminder_email.py, ids
`reminder_email.*`), so they are translated and checked for readability with the portal's.
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
from core.texts import catalogue, t

# Stands for `{what}` while the HTML part is escaped, then becomes <strong>what</strong>.
_WHAT_MARK: Final = "\x00"


def what_in_words(reminder: Reminder) -> str:
    """'check your blood pressure' / 'take your medicine'."""
    if reminder.kind == "dose":
        return t("reminder_email.what.dose")
    msg_id = f"reminder_email.what.{reminder.metric}"
    # A metric without words of its own (a new one) reads "check your reading".
    return t(msg_id if msg_id in catalogue() else "reminder_email.what.other")


def reminder_email(
    reminder: Reminder, *, to: Address, sender: str, link_base: str, zone: ZoneInfo, now: datetime
) -> EmailMessage:
    what = what_in_words(reminder)
    at = reminder.scheduled_at.astimezone(zone).strftime("%H:%M")
    window_end = reminder.window_end.astimezone(zone).strftime("%H:%M")
    link = f"{link_base.rstrip('/')}/me/reminders"
    time_to = "reminder_email.time_to.follow_up" if reminder.follow_up else "reminder_email.time_to"
    msg = EmailMessage()
    msg["Subject"] = t("reminder_email.subject", what=what)
    msg["From"] = sender
    msg["To"] = to
    msg["Date"] = format_datetime(now.astimezone(UTC))
    msg["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2] or "localhost")
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies
    msg["X-RPM-Reminder-Id"] = str(reminder.id)
    opening = [t(time_to, what=what)]
    if reminder.kind == "measurement":
        opening.append(t("reminder_email.device_sends"))
    planned = t("reminder_email.planned", at=at, until=window_end)
    closing = [t("reminder_email.change"), t("reminder_email.no_details")]
    lines = [*opening, planned, "", t("reminder_email.see", link=link), "", *closing]
    msg.set_content("\n".join(lines) + "\n")
    e = html.escape
    first = e(t(time_to, what=_WHAT_MARK)).replace(_WHAT_MARK, f"<strong>{e(what)}</strong>")
    msg.add_alternative(
        "<!doctype html><html><body>"
        f"<p>{' '.join([first, *(e(x) for x in opening[1:])])}</p>"
        f"<p>{e(planned)}</p>"
        f'<p><a href="{e(link)}">{e(t("reminder_email.see.link"))}</a></p>'
        f"<p>{e(' '.join(closing))}</p>"
        "</body></html>",
        subtype="html",
    )
    return msg
