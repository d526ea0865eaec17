"""Models of a patient's reminders and profile at the HTTP boundary."""

from __future__ import annotations

import re
from datetime import datetime, time
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Channel = Literal["in_app", "email"]
State = Literal["queued", "sent", "cancelled", "skipped"]
MAX_DAYS: Final = 30
MAX_REMINDERS: Final = 200
# The same rule as the table's CHECK (and the clinicians' notification_settings).
EMAIL: Final = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


class ReminderQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(7, ge=1, le=MAX_DAYS, description=f"Reminders of the last N days (max {MAX_DAYS})")
    channel: Channel | None = Field(None, description="Only reminders of this channel")


class ReminderRead(BaseModel):
    id: int = Field(description="Reminder id (mark an in-app one seen with POST /me/reminders/{id}/seen)")
    kind: Literal["measurement", "dose"]
    metric: str = Field(description="The metric of the schedule (medication_taken for a dose)")
    dose_id: str | None = Field(description="The dose of a medication schedule")
    what: str = Field(description="What the reminder asks, in plain words")
    channel: Channel
    follow_up: bool = Field(description="True for the one gentle follow-up of a reminder")
    scheduled_at: datetime = Field(description="The slot's planned time")
    window_end: datetime = Field(description="The reading or dose still counts until then")
    due_at: datetime = Field(description="When it is (or was last) due; quiet hours move it")
    state: State
    outcome: str | None = Field(
        description="sent, reading_after, no_reading, cancelled_reading_arrived, skipped_quiet_hours, "
        "skipped_window_closed, skipped_channel_off, skipped_no_address, skipped_plan_changed, "
        "skipped_send_failed; null while queued"
    )
    outcome_text: str = Field(description="The outcome in plain words")
    sent_at: datetime | None
    seen_at: datetime | None


class ReminderList(BaseModel):
    pending: list[ReminderRead] = Field(description="Reminders coming up (queued), soonest first")
    recent: list[ReminderRead] = Field(description="Reminders settled in the last `days` days, newest first")


class ProfileRead(BaseModel):
    email: str | None = Field(description="Contact e-mail for reminders")
    channels: list[Channel] = Field(description="How reminders reach me")
    quiet_start: time | None = Field(description="Quiet hours start (local time); no reminder is sent in them")
    quiet_end: time | None = Field(description="Quiet hours end (local time); they may wrap midnight")
    time_zone: str | None = Field(description="My time zone (IANA); null: the care plan's")
    effective_time_zone: str = Field(description="The time zone used: mine, else the care plan's, else UTC")
    updated_at: datetime | None = Field(description="Last change; null when never set (defaults apply)")


def _in_app_only() -> list[Channel]:
    return ["in_app"]


class ProfileUpdate(BaseModel):
    """The whole profile (PUT replaces it)."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(None, max_length=320, description="Contact e-mail; null or empty: none")
    channels: list[Channel] = Field(
        default_factory=_in_app_only, max_length=2, description="in_app and/or email; e-mail needs an address"
    )
    quiet_start: time | None = Field(None, description="HH:MM; both quiet times or neither")
    quiet_end: time | None = Field(None, description="HH:MM; different from quiet_start")
    time_zone: str | None = Field(None, max_length=64, description="IANA time zone; null: the care plan's")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not EMAIL.match(value):
            raise ValueError("not an e-mail address")
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("unknown time zone") from exc
        return value

    @field_validator("quiet_start", "quiet_end")
    @classmethod
    def _local(cls, value: time | None) -> time | None:
        if value is not None and value.tzinfo is not None:
            raise ValueError("a local time of day, without an offset")
        return None if value is None else value.replace(second=0, microsecond=0)

    @model_validator(mode="after")
    def _together(self) -> ProfileUpdate:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels: each channel once")
        if "email" in self.channels and self.email is None:
            raise ValueError("channels: email needs an e-mail address")
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise ValueError("quiet hours: give both quiet_start and quiet_end, or neither")
        if self.quiet_start is not None and self.quiet_start == self.quiet_end:
            raise ValueError("quiet hours: quiet_start and quiet_end must differ")
        return self
