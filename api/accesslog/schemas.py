"""Boundary models of the access log: the patient's filters and page of visits, the flag a
patient raises, and the privacy officer's queue and review."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from api.admin.schemas import decode_cursor
from api.observations.schemas import EARLIEST, LATEST, Rfc3339, UtcDatetime

MAX_LIMIT: Final = 100
DEFAULT_LIMIT: Final = 20
MAX_QUEUE_LIMIT: Final = 200
MAX_NOTE: Final = 1000
MAX_OUTCOME_NOTE: Final = 2000
MAX_EVENT_ID: Final = 2**63 - 1
_CURSOR: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR_ERROR: Final = "is not a cursor this API issued; start without one"

ActorRole = Literal["clinician", "admin", "ops", "patient"]
FlagState = Literal["open", "reviewed"]


def _clean_note(value: str | None, *, empty_is_none: bool) -> str | None:
    if value is None:
        return None
    text = value.strip()
    if any(ord(c) < 32 and c not in "\t\n\r" for c in text):
        raise ValueError("the note may not hold control characters")
    if not text and empty_is_none:
        return None
    return text


class AccessLogQuery(BaseModel):
    """Filters of my access log; all optional, combined with AND. Newest first."""

    model_config = ConfigDict(extra="forbid")

    role: ActorRole | None = Field(None, description="Only visits by people of this role")
    start: Rfc3339 = Field(None, description="Visits at or after (RFC 3339)", json_schema_extra={"format": "date-time"})
    end: Rfc3339 = Field(None, description="Visits before (RFC 3339)", json_schema_extra={"format": "date-time"})
    break_glass: bool = Field(False, description="true: only visits under an emergency (break-glass) grant")
    include_mine: bool = Field(False, description="true: also my own actions on my record (shown as 'You')")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"At most this many visits (max {MAX_LIMIT})")
    cursor: str | None = Field(None, max_length=64, description="`next_cursor` of the previous page (same filters)")
    _after: tuple[datetime, int] | None = PrivateAttr(None)

    @field_validator("cursor")
    @classmethod
    def _cursor_shape(cls, value: str | None) -> str | None:
        if value is not None and not _CURSOR.fullmatch(value):
            raise PydanticCustomError("cursor", _CURSOR_ERROR)
        return value

    @model_validator(mode="after")
    def _resolve(self) -> AccessLogQuery:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise PydanticCustomError("time_range", "start must be before end")
        # The same (time, id) keyset as the admins' audit query (api/admin/schemas.py).
        self._after = decode_cursor(self.cursor) if self.cursor else None
        return self

    @property
    def after(self) -> tuple[datetime, int] | None:
        return self._after


class Actor(BaseModel):
    """Who did it, as the patient may see it: staff by name, another patient never by name."""

    name: str = Field(description="Display name of staff; 'You', 'Another patient' or a placeholder otherwise")
    role: str | None = Field(description="clinician, admin, ops or patient; null when unknown")
    role_words: str = Field(description="The role in plain words")
    is_me: bool = Field(description="True for my own actions")


class FlagRead(BaseModel):
    """A patient's flag on one visit, as the patient sees it."""

    id: int
    state: FlagState
    flagged_at: UtcDatetime
    reviewed_at: UtcDatetime | None = None
    outcome_note: str | None = Field(None, description="What the privacy officer found (written for the patient)")


class AccessLogEntry(BaseModel):
    """One access to my record."""

    id: int = Field(description="Audit event id (flag it with POST /me/access-log/{id}/flag)")
    at: UtcDatetime
    who: Actor
    action: str = Field(description="What was done, as audited (read, update, create, ...)")
    resource: str = Field(description="What it was done to, as audited")
    did: str = Field(description="The action in plain words")
    what: str = Field(description="The part of my record in plain words")
    sentence: str = Field(description="Who did what, in one plain sentence")
    outcome: Literal["allowed", "denied", "error"]
    outcome_words: str
    break_glass: bool = Field(description="True when this was emergency (break-glass) access")
    break_glass_reason: str | None = Field(description="The reason the clinician gave for emergency access")
    flag: FlagRead | None = Field(description="My latest flag on this visit, if any")


class AccessLogPage(BaseModel):
    items: list[AccessLogEntry]
    next_cursor: str | None = Field(description="Pass as `cursor` (same filters) for older visits; null at the end")


class FlagRequest(BaseModel):
    """I do not recognise this access."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(
        None, max_length=MAX_NOTE, description=f"Optional words for the privacy officer (<= {MAX_NOTE})"
    )

    @field_validator("note")
    @classmethod
    def _note(cls, value: str | None) -> str | None:
        return _clean_note(value, empty_is_none=True)


class FlaggedEvent(BaseModel):
    """The visit a flag is about, as the privacy officer sees it."""

    id: int
    at: UtcDatetime
    actor_id: str | None
    actor_name: str | None
    actor_role: str | None
    action: str
    resource: str
    outcome: str
    break_glass: bool
    break_glass_reason: str | None


class PrivacyFlagRead(BaseModel):
    """A flag in the privacy officer's queue."""

    id: int
    patient_id: str
    note: str | None
    flagged_at: UtcDatetime
    state: FlagState
    reviewed_by: str | None = Field(description="User id of the reviewer")
    reviewed_at: UtcDatetime | None
    outcome_note: str | None
    event: FlaggedEvent


class PrivacyFlagPage(BaseModel):
    items: list[PrivacyFlagRead]
    next_cursor: str | None = Field(description="Pass as `cursor` (same filter) for the next page; null at the end")


class PrivacyFlagQuery(BaseModel):
    """The queue: open flags first (oldest first), then reviewed ones (oldest first)."""

    model_config = ConfigDict(extra="forbid")

    state: FlagState | None = Field(None, description="Only flags in this state")
    limit: int = Field(50, ge=1, le=MAX_QUEUE_LIMIT, description=f"At most this many flags (max {MAX_QUEUE_LIMIT})")
    cursor: str | None = Field(None, max_length=64, description="`next_cursor` of the previous page (same filter)")
    _after: tuple[int, datetime, int] | None = PrivateAttr(None)

    @field_validator("cursor")
    @classmethod
    def _cursor_shape(cls, value: str | None) -> str | None:
        if value is not None and not _CURSOR.fullmatch(value):
            raise PydanticCustomError("cursor", _CURSOR_ERROR)
        return value

    @model_validator(mode="after")
    def _resolve(self) -> PrivacyFlagQuery:
        self._after = decode_queue_cursor(self.cursor) if self.cursor else None
        return self

    @property
    def after(self) -> tuple[int, datetime, int] | None:
        return self._after


class ReviewRequest(BaseModel):
    """What the privacy officer found; the patient sees it on their log."""

    model_config = ConfigDict(extra="forbid")

    outcome_note: str = Field(
        min_length=1,
        max_length=MAX_OUTCOME_NOTE,
        description=f"What was found, written for the patient (1-{MAX_OUTCOME_NOTE} characters); shown on their log",
    )

    @field_validator("outcome_note")
    @classmethod
    def _note(cls, value: str) -> str:
        text = _clean_note(value, empty_is_none=False)
        if not text:
            raise ValueError("the outcome note may not be empty")
        return text


def encode_queue_cursor(rank: int, at: datetime, flag_id: int) -> str:
    micros = (at - _EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"{rank}.{micros}.{flag_id}".encode()).decode().rstrip("=")


def decode_queue_cursor(cursor: str) -> tuple[int, datetime, int]:
    invalid = PydanticCustomError("cursor", _CURSOR_ERROR)
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        rank_text, micros_text, id_text = text.split(".")
        rank, flag_id = int(rank_text), int(id_text)
        at = _EPOCH + timedelta(microseconds=int(micros_text))
    except (ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise invalid from exc
    if rank not in (0, 1) or not EARLIEST <= at <= LATEST or not 0 < flag_id < 2**63:
        raise invalid
    return rank, at, flag_id
