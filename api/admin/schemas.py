"""Boundary models of the audit query: the filters and the page of events."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from api.observations.schemas import EARLIEST, LATEST, Rfc3339, UtcDatetime

MAX_LIMIT: Final = 500
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TEXT: Final = r"^[^\x00-\x1f]{1,64}$"


class AuditQuery(BaseModel):
    """Filters of the audit query; all optional, combined with AND. Newest first."""

    model_config = ConfigDict(extra="forbid")

    patient_id: str | None = Field(None, pattern=_TEXT, description="Events about this patient")
    actor_id: uuid.UUID | None = Field(None, description="Events of this user")
    action: str | None = Field(None, pattern=_TEXT, description="e.g. read, update, create, login, what_if")
    resource: str | None = Field(None, pattern=_TEXT, description="e.g. observations, care_plan, device")
    outcome: Literal["allowed", "denied", "error"] | None = Field(None, description="allowed, denied or error")
    break_glass: bool | None = Field(
        None, description="true: only events of access under a break-glass grant; false: only the others"
    )
    start: Rfc3339 = Field(None, description="Events at or after (RFC 3339)", json_schema_extra={"format": "date-time"})
    end: Rfc3339 = Field(None, description="Events before (RFC 3339)", json_schema_extra={"format": "date-time"})
    limit: int = Field(100, ge=1, le=MAX_LIMIT, description=f"At most this many events (max {MAX_LIMIT})")
    cursor: str | None = Field(None, max_length=64, description="`next_cursor` of the previous page (same filters)")
    _after: tuple[datetime, int] | None = PrivateAttr(None)

    @field_validator("cursor")
    @classmethod
    def _cursor_shape(cls, value: str | None) -> str | None:
        if value is not None and not _CURSOR.fullmatch(value):
            raise PydanticCustomError("cursor", "is not a cursor this API issued; start without one")
        return value

    @model_validator(mode="after")
    def _resolve(self) -> AuditQuery:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise PydanticCustomError("time_range", "start must be before end")
        self._after = decode_cursor(self.cursor) if self.cursor else None
        return self

    @property
    def after(self) -> tuple[datetime, int] | None:
        return self._after


class AuditEventRead(BaseModel):
    id: int
    at: UtcDatetime
    actor_id: uuid.UUID | None
    actor_role: str | None
    patient_id: str | None
    action: str
    resource: str
    outcome: str
    detail: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEventRead]
    next_cursor: str | None = Field(description="Pass as `cursor` (same filters) for older events; null at the end")


def encode_cursor(at: datetime, event_id: int) -> str:
    micros = (at - _EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"{micros}.{event_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    invalid = PydanticCustomError("cursor", "is not a cursor this API issued; start without one")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        micros_text, id_text = text.split(".")
        at = _EPOCH + timedelta(microseconds=int(micros_text))
        event_id = int(id_text)
    except (ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise invalid from exc
    if not EARLIEST <= at <= LATEST or not 0 < event_id < 2**63:
        raise invalid
    return at, event_id
