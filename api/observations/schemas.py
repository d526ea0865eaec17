"""Boundary models of observation reads: the query and the page returned."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from core.catalogue import CATALOGUE, METRIC_NAMES

DEFAULT_SPAN: Final = timedelta(hours=24)
MAX_SPAN: Final = timedelta(days=31)
DEFAULT_LIMIT: Final = 1000
MAX_LIMIT: Final = 10_000

_RFC3339: Final = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
# In a query string an unencoded "+" arrives as a space; accept "...T08:00:00 01:00"
# as the "+01:00" the client meant rather than failing a request that is unambiguous.
_SPACE_OFFSET: Final = re.compile(r"(T\d{2}:\d{2}:\d{2}(?:\.\d+)?) (\d{2}:\d{2})$", re.IGNORECASE)


def _parse_rfc3339(value: Any) -> Any:
    """Accept only RFC 3339 date-times with an offset (no dates, no epoch numbers)."""
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("rfc3339", "must be an RFC 3339 date-time string")
    text = _SPACE_OFFSET.sub(r"\1+\2", value.strip())
    if not _RFC3339.match(text):
        raise PydanticCustomError(
            "rfc3339", "must be an RFC 3339 date-time with a time zone, e.g. 2025-01-31T08:00:00Z"
        )
    # Python parses at most microseconds: drop extra fraction digits (nanosecond clients).
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        return datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError as exc:
        raise PydanticCustomError("rfc3339", "is not a valid date-time: {error}", {"error": str(exc)}) from exc


Rfc3339 = Annotated[datetime | None, BeforeValidator(_parse_rfc3339)]
# The database answers in its session time zone; the API always answers in UTC.
UtcDatetime = Annotated[datetime, AfterValidator(lambda value: value.astimezone(UTC))]


class ObservationQuery(BaseModel):
    """Query parameters of an observation read."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(description=f"One of: {', '.join(METRIC_NAMES)}")
    start: Rfc3339 = Field(None, description="Inclusive start, RFC 3339 with offset (default: end - 24 h)")
    end: Rfc3339 = Field(None, description="Exclusive end, RFC 3339 with offset (default: now)")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"At most this many items (max {MAX_LIMIT})")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in CATALOGUE:
            raise PydanticCustomError(
                "unknown_metric",
                "unknown metric '{metric}'; expected one of {expected}",
                {"metric": value[:64], "expected": ", ".join(METRIC_NAMES)},
            )
        return value

    @model_validator(mode="after")
    def _resolve_range(self) -> ObservationQuery:
        end = (self.end or datetime.now(UTC)).astimezone(UTC)
        start = (self.start or end - DEFAULT_SPAN).astimezone(UTC)
        if start >= end:
            raise PydanticCustomError("time_range", "start must be before end")
        if end - start > MAX_SPAN:
            raise PydanticCustomError("time_range", "the range may span at most {days} days", {"days": MAX_SPAN.days})
        self.start, self.end = start, end
        return self

    @property
    def range(self) -> tuple[datetime, datetime]:
        """(start, end) after defaults were applied (never None once validated)."""
        assert self.start is not None
        assert self.end is not None
        return self.start, self.end


class ObservationRead(BaseModel):
    ts: UtcDatetime = Field(description="When the measurement was taken (UTC)")
    value: float = Field(description="Value in the metric's canonical unit")
    device_id: str = Field(description="Device that measured it")


class ObservationPage(BaseModel):
    """Observations of one patient and metric in [start, end), oldest first."""

    patient_id: str
    metric: str
    unit: str = Field(description="Canonical UCUM unit of every value")
    start: datetime
    end: datetime
    items: list[ObservationRead]
    truncated: bool = Field(
        description="True when more observations fall in the range than `limit`; "
        "continue from just after the last item's ts"
    )
