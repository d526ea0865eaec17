"""Boundary models of the clinician's alerts: the inbox query and page, an alert with its
history, the bodies of the transitions, the precision figures, and the inbox cursor."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, Field, model_validator

from api.observations.schemas import Rfc3339, UtcDatetime
from core.alert_lifecycle import MAX_NOTE_CHARS, MAX_SNOOZE

State = Literal["open", "acknowledged", "snoozed", "resolved"]
Severity = Literal["info", "low", "medium", "high", "critical"]
Sort = Literal["severity", "age"]
PersonDisposition = Literal["actionable", "not_actionable", "false_reading", "duplicate", "other"]

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 200
MAX_CURSOR_LENGTH: Final = 300
UNRESOLVED: Final[tuple[State, ...]] = ("open", "acknowledged", "snoozed")
MAX_SNOOZE_MINUTES: Final = int(MAX_SNOOZE.total_seconds() // 60)
DEFAULT_WINDOW_DAYS: Final = 30
MAX_WINDOW_DAYS: Final = 365


class AlertRead(BaseModel):
    """One alert as the inbox shows it."""

    id: uuid.UUID
    patient_id: str
    rule: str = Field(description="The detection rule that raised it, e.g. spo2_low")
    severity: Severity
    state: State
    title: str
    opened_at: UtcDatetime
    updated_at: UtcDatetime
    repeat_count: int = Field(description="How many detections raised it (1 + re-triggers)")
    last_triggered_at: UtcDatetime | None
    acknowledged_at: UtcDatetime | None
    acknowledged_by: uuid.UUID | None
    assigned_to: uuid.UUID | None
    snoozed_until: UtcDatetime | None
    resolved_at: UtcDatetime | None
    resolved_by: uuid.UUID | None = Field(description="null for a detection's clear (self_resolved)")
    disposition: str | None
    resolution_note: str | None
    escalation_tier: int = Field(description="The escalation tier reached (0: those told when it opened)")
    evidence: dict[str, Any] = Field(description="What the detection saw (the values behind the alert)")


class AlertEventRead(BaseModel):
    """One row of an alert's history: who (null: the platform), when, what and why."""

    id: int = Field(description="Also the `id:` of this event on the alert stream")
    alert_id: uuid.UUID
    kind: str = Field(description="opened, retriggered, acknowledged, snoozed, unsnoozed, assigned, ...")
    at: UtcDatetime
    actor_id: uuid.UUID | None
    from_state: str | None
    to_state: str
    note: str | None
    detail: dict[str, Any]


class AlertDetail(AlertRead):
    """An alert with its whole history, oldest first."""

    history: list[AlertEventRead]


class AlertPage(BaseModel):
    items: list[AlertRead]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class AssignBody(BaseModel):
    assignee: uuid.UUID | None = Field(
        description="A clinician (or admin) of the patient's care team; null takes the alert from whoever has it"
    )


class SnoozeBody(BaseModel):
    """Either `until` or `minutes`; at most 24 hours from now."""

    until: Rfc3339 = Field(None, description="When the snooze ends (RFC 3339 with a time zone)")
    minutes: int | None = Field(None, ge=1, le=MAX_SNOOZE_MINUTES, description="Or: how long from now")
    note: str | None = Field(None, max_length=MAX_NOTE_CHARS, description="Why (kept in the history)")

    @model_validator(mode="after")
    def _one_of(self) -> SnoozeBody:
        if (self.until is None) == (self.minutes is None):
            raise ValueError("give exactly one of `until` and `minutes`")
        return self


class ResolveBody(BaseModel):
    disposition: PersonDisposition = Field(description="What the alert turned out to be; `other` needs a note")
    note: str | None = Field(None, max_length=MAX_NOTE_CHARS)


class NoteBody(BaseModel):
    note: str = Field(min_length=1, max_length=MAX_NOTE_CHARS)


class AcknowledgeBody(BaseModel):
    note: str | None = Field(None, max_length=MAX_NOTE_CHARS, description="Optional: kept in the history")


class RulePrecision(BaseModel):
    rule: str
    resolved_by_person: int = Field(description="Resolved with a person's disposition in the window")
    actionable: int
    precision: float | None = Field(description="actionable ÷ resolved by a person; null while none was")


class PrecisionRead(BaseModel):
    """How many alerts were worth a clinician's time, over the caller's care teams' patients."""

    days: int
    since: UtcDatetime
    rules: list[RulePrecision]
    alerts_opened: int
    patients: int
    alerts_per_patient_day: float | None


@dataclass(frozen=True, slots=True)
class InboxQuery:
    """The inbox filters after parsing (`assignee`: a user id, or "none" for unassigned)."""

    states: tuple[State, ...] = UNRESOLVED
    severities: tuple[Severity, ...] = ()
    rule: str | None = None
    patient_id: str | None = None
    assignee: uuid.UUID | Literal["none"] | None = None
    sort: Sort = "severity"
    limit: int = DEFAULT_LIMIT
    after: Cursor | None = None


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the sort key of its last alert."""

    sort: Sort
    rank: int
    opened_at: datetime
    id: uuid.UUID


def encode_cursor(cursor: Cursor) -> str:
    raw = json.dumps([cursor.sort, cursor.rank, cursor.opened_at.isoformat(), str(cursor.id)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(value: str) -> Cursor | None:
    """The cursor, or None when it is not one of ours."""
    if len(value) > MAX_CURSOR_LENGTH:
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        sort, rank, opened_at, alert_id = raw
        if sort not in ("severity", "age") or type(rank) is not int or not 0 <= rank <= 4:
            return None
        if not isinstance(opened_at, str) or not isinstance(alert_id, str):
            return None
        at = datetime.fromisoformat(opened_at)
        if at.tzinfo is None:
            return None
        return Cursor(sort, rank, at, uuid.UUID(alert_id))
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
