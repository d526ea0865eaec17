"""Settings of the reminder loop (a settings group the alert service's settings inherit;
prefix `RPM_`). E-mail goes through the same relay as alert e-mail (`NotifySettings`)."""

from __future__ import annotations

from datetime import time

from pydantic import Field

from alerts.notify.settings import NotifySettings
from core.settings import BaseRpmSettings


class RemindersSettings(BaseRpmSettings):
    reminders_enabled: bool = Field(True, description="Run the reminder loop in the alert service")
    reminders_interval_s: float = Field(
        15.0, gt=0, description="Seconds between rounds of the reminder loop (plan, send or cancel, settle)"
    )
    reminders_horizon_s: int = Field(
        7200,
        ge=60,
        le=86400,
        description="Reminders are planned (and shown to the patient as coming) this many seconds before they are due",
    )
    reminders_batch: int = Field(200, ge=1, le=5000, description="Most due reminders decided per round")
    reminders_daily_at: time = Field(
        time(18, 0),
        description="Local time of the reminder of a schedule that counts readings per day (times_per_day)",
    )
    reminders_follow_up_gap_s: int = Field(
        900, ge=60, description="A follow-up comes at least this many seconds after the first reminder"
    )
    reminders_follow_up_margin_s: int = Field(
        900, ge=0, description="A follow-up comes at least this many seconds before the slot's window ends"
    )
    reminders_close_grace_s: int = Field(
        300,
        ge=0,
        description="Wait this long after a window closed before settling a sent reminder's outcome "
        "(readings stored offline may still come)",
    )
    reminders_from: str = Field(
        "RPM reminders <rpm-reminders@localhost>", description="From address of reminder e-mail"
    )
    reminders_max_attempts: int = Field(
        5, ge=1, le=50, description="Attempts at one reminder e-mail (temporary relay errors) before it is skipped"
    )


class LoopSettings(RemindersSettings, NotifySettings):
    """What the reminder loop reads: its own settings and the e-mail relay's (the alert
    service's settings class is one)."""
