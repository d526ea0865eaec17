"""Patient-facing text of reminders and the profile (`/me/reminders`, `/me/profile`, ADR 0026).

Message id -> English text, looked up through `api.portal.text.t`. Short sentences, plain words.
"""

from __future__ import annotations

from typing import Final

MESSAGES: Final[dict[str, str]] = {
    # --- what a reminder asks -----------------------------------------------------------------
    "reminders.what.dose": "Take your medicine",
    "reminders.what.heart_rate": "Check your heart rate",
    "reminders.what.resp_rate": "Check your breathing rate",
    "reminders.what.spo2": "Check your oxygen level",
    "reminders.what.body_temp": "Take your temperature",
    "reminders.what.bp_systolic": "Check your blood pressure",
    "reminders.what.bp_diastolic": "Check your blood pressure",
    "reminders.what.body_weight": "Weigh yourself",
    "reminders.what.glucose": "Check your blood sugar",
    "reminders.what.other": "Take your reading",
    # --- how it was sent ----------------------------------------------------------------------
    "reminders.channel.in_app": "In the app",
    "reminders.channel.email": "By e-mail",
    "reminders.follow_up": "Second nudge",
    # --- what happened ------------------------------------------------------------------------
    "reminders.outcome.queued": "Coming up",
    "reminders.outcome.sent": "Sent to you.",
    "reminders.outcome.reading_after": "Sent. Your reading came in after it. Well done!",
    "reminders.outcome.no_reading": "Sent. No reading came in that time. That is OK, just try next time.",
    "reminders.outcome.cancelled_reading_arrived": "Not needed. Your reading came in first. Well done!",
    "reminders.outcome.skipped_quiet_hours": "Not sent. It was in your quiet hours.",
    "reminders.outcome.skipped_window_closed": "Not sent. The time for it had passed.",
    "reminders.outcome.skipped_channel_off": "Not sent. You turned this way off.",
    "reminders.outcome.skipped_no_address": "Not sent. We have no e-mail for you.",
    "reminders.outcome.skipped_plan_changed": "Not sent. Your care plan changed.",
    "reminders.outcome.skipped_send_failed": "Not sent. The e-mail did not go through.",
    # --- the reminders page -------------------------------------------------------------------
    "reminders.title": "Reminders",
    "reminders.intro": (
        "We remind you when it is time for a reading or a dose. If your reading comes in first, we do not remind you."
    ),
    "reminders.pending": "Coming up",
    "reminders.pending.none": "No reminders are coming up in the next few hours.",
    "reminders.recent": "Recent reminders",
    "reminders.recent.none": "You have no reminders from the last week.",
    "reminders.due": "Due at {time}",
    "reminders.until": "There is still time. You can do it until {time}.",
    "reminders.times_in": "Times are in your time zone, {zone}.",
    "reminders.change": "Change how and when we remind you",
    "reminders.seen": "Mark as seen",
    "reminders.seen.done": "Seen",
    "reminders.for_patients": "This page is for patients. It shows your own reminders.",
    # --- the profile page ---------------------------------------------------------------------
    "profile.title": "Profile",
    "profile.intro": "Choose how and when we remind you. We only use your e-mail for reminders.",
    "profile.email": "E-mail",
    "profile.email.help": "Leave it empty if you do not want e-mail.",
    "profile.channels": "How to remind me",
    "profile.channel.in_app": "In the app",
    "profile.channel.email": "By e-mail",
    "profile.quiet": "Quiet hours",
    "profile.quiet.help": "We send no reminders in these hours. Leave both empty to have none.",
    "profile.quiet_start": "Quiet from",
    "profile.quiet_end": "Quiet until",
    "profile.time_zone": "Time zone",
    "profile.time_zone.help": "Your care plan uses {zone}. Leave it empty to use that.",
    "profile.save": "Save",
    "profile.saved": "Saved. We will remind you this way from now on.",
    "profile.for_patients": "This page is for patients. It shows your own profile.",
    "profile.error.email": "This does not look like an e-mail. Please check it.",
    "profile.error.email_needed": "To get e-mail, please add your e-mail.",
    "profile.error.quiet_pair": "Please fill in both quiet times, or leave both empty.",
    "profile.error.quiet_same": "Quiet from and until cannot be the same time.",
    "profile.error.time": "Please write a time like 21:30.",
    "profile.error.time_zone": "We do not know this time zone. Try a name like Europe/Oslo.",
    "profile.error.title": "Please check the form",
    "profile.expired": "This form is too old. Please load the page again and try again.",
}
