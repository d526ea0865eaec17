"""Patient-facing text of the reminder e-mail the alert service sends (ADR 0026).

Message id -> English text, looked up through `core.texts.t` (alerts/reminders/messages.py) and
part of the one catalogue (`api.portal.text.catalogue()`). No health details on purpose: what
to do and when, nothing else (ADR 0019). `{what}` is one of the `reminder_email.what.*` texts.
"""

from __future__ import annotations

from typing import Final

MESSAGES: Final[dict[str, str]] = {
    # --- what the reminder asks, as it reads after "time to" ----------------------------------
    "reminder_email.what.dose": "take your medicine",
    "reminder_email.what.heart_rate": "check your heart rate",
    "reminder_email.what.resp_rate": "check your breathing rate",
    "reminder_email.what.spo2": "check your oxygen level",
    "reminder_email.what.body_temp": "check your temperature",
    "reminder_email.what.bp_systolic": "check your blood pressure",
    "reminder_email.what.bp_diastolic": "check your blood pressure",
    "reminder_email.what.body_weight": "check your weight",
    "reminder_email.what.glucose": "check your blood sugar",
    "reminder_email.what.other": "check your reading",
    # --- the e-mail ---------------------------------------------------------------------------
    "reminder_email.subject": "Reminder: time to {what}",
    "reminder_email.time_to": "It is time to {what}.",
    "reminder_email.time_to.follow_up": "A gentle nudge: it is time to {what}.",
    "reminder_email.device_sends": "Your device sends the reading to your care team.",
    "reminder_email.planned": "It was planned for {at}. You can still do it until {until}.",
    "reminder_email.see": "See your reminders: {link}",
    "reminder_email.see.link": "See your reminders",
    "reminder_email.change": "You can change how and when we remind you on your profile page.",
    "reminder_email.no_details": "This e-mail has no health details on purpose.",
}
