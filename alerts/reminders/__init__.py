"""Reminders of the care-plan schedules (ADR 0026): pure rules (`rules`), the e-mail
(`messages`), the SQL (`repository`) and the loop the alert service supervises
(`loop.run_reminders`), with its settings (`settings.RemindersSettings`)."""

from alerts.reminders.loop import ReminderLoop, run_reminders
from alerts.reminders.settings import LoopSettings, RemindersSettings

__all__ = ["LoopSettings", "ReminderLoop", "RemindersSettings", "run_reminders"]
