"""Boundary models of observation reads: the query and the page returned."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from core.catalogue import CATALOGUE, METRIC_NAMES

DEFAULT_SPAN: Final = timedelta(hours=24)
MAX_SPAN: Final = timedelta(days=31)
DEFAULT_LIMIT: Final = 1000
MAX_LIMIT: Final = 10_000
# Instants the API accepts: far enough from year 1 and 9999 that any range, default span or
# cursor computed from them stays a valid datetime (and a valid PostgreSQL timestamptz).
EARLIEST: Final = datetime(1900, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(9000, 1, 1, tzinfo=UTC)
_RANGE: Final = {"low": EARLIEST.isoformat(), "high": LATEST.isoformat()}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MAX_CURSOR_LENGTH: Final = 200
_CURSOR: Final = re.compile(r"[A-Za-z0-9_-]+")

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
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError as exc:
        raise PydanticCustomError("rfc3339", "is not a valid date-time: {error}", {"error": str(exc)}) from exc
    # Normalised to UTC here, once: 0001-01-01T00:00:00+01:00 or 9999-12-31T23:59:59-01:00
    # exist as written but not in UTC, and date arithmetic near the ends of the calendar
    # overflows. Refuse what falls outside the range every computation of ours can handle.
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError as exc:
        raise PydanticCustomError("rfc3339", "is outside the supported range {low} to {high}", _RANGE) from exc
    if not EARLIEST <= utc <= LATEST:
        raise PydanticCustomError("rfc3339", "is outside the supported range {low} to {high}", _RANGE)
    return utc


def known_metric(value: str) -> str:
    """A metric of the catalogue; any other name is refused with the catalogue listed."""
    if value not in CATALOGUE:
        raise PydanticCustomError(
            "unknown_metric",
            "unknown metric '{metric}'; expected one of {expected}",
            {"metric": value[:64], "expected": ", ".join(METRIC_NAMES)},
        )
    return value


def resolve_range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """[start, end) with the defaults applied (end: now, start: end - 24 h), at most MAX_SPAN."""
    # Both are UTC and within [EARLIEST, LATEST] (see _parse_rfc3339): no overflow here.
    end = end or datetime.now(UTC)
    start = start or end - DEFAULT_SPAN
    if start >= end:
        raise PydanticCustomError("time_range", "start must be before end")
    if end - start > MAX_SPAN:
        raise PydanticCustomError("time_range", "the range may span at most {days} days", {"days": MAX_SPAN.days})
    return start, end


Rfc3339 = Annotated[datetime | None, BeforeValidator(_parse_rfc3339)]
# The database answers in its session time zone; the API always answers in UTC.
UtcDatetime = Annotated[datetime, AfterValidator(lambda value: value.astimezone(UTC))]


class ObservationQuery(BaseModel):
    """Query parameters of an observation read."""

    model_config = ConfigDict(extra="forbid")

    # The enum and format are for the OpenAPI document (clients, fuzzers); validation stays
    # ours, so that an unknown metric gets a message listing the catalogue.
    metric: str = Field(
        description=f"One of: {', '.join(METRIC_NAMES)}", json_schema_extra={"enum": list(METRIC_NAMES)}
    )
    start: Rfc3339 = Field(
        None,
        description="Inclusive start, RFC 3339 with offset (default: end - 24 h)",
        json_schema_extra={"format": "date-time"},
    )
    end: Rfc3339 = Field(
        None,
        description="Exclusive end, RFC 3339 with offset (default: now)",
        json_schema_extra={"format": "date-time"},
    )
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"At most this many items (max {MAX_LIMIT})")
    _after: datetime | None = PrivateAttr(None)
    cursor: str | None = Field(
        None,
        max_length=MAX_CURSOR_LENGTH,
        description="`next_cursor` of the previous page: continue after its last item "
        "(send the same metric, start and end with it)",
    )

    _known_metric = field_validator("metric")(known_metric)

    @model_validator(mode="after")
    def _resolve_range(self) -> ObservationQuery:
        self.start, self.end = resolve_range(self.start, self.end)
        self._after = decode_cursor(self.cursor, self.metric) if self.cursor else None
        return self

    @field_validator("cursor")
    @classmethod
    def _cursor_shape(cls, value: str | None) -> str | None:
        if value is not None and not _CURSOR.fullmatch(value):
            raise PydanticCustomError("cursor", "is not a cursor this API issued; start without one")
        return value

    @property
    def after(self) -> datetime | None:
        """The last ts of the previous page, from the cursor (None on the first page)."""
        return self._after

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
    truncated: bool = Field(description="True when more observations fall in the range than this page holds")
    next_cursor: str | None = Field(
        description="Opaque: pass as `cursor` (with the same query) for the next page; null on the last page"
    )


def encode_cursor(metric: str, last_ts: datetime) -> str:
    """An opaque keyset cursor: the metric and the exact (microsecond) ts of the last item."""
    micros = (last_ts - _EPOCH) // timedelta(microseconds=1)
    raw = json.dumps({"v": 1, "m": metric, "t": micros}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, metric: str) -> datetime:
    """The ts a cursor continues after; a cursor that is not ours or not for this metric is refused."""
    invalid = PydanticCustomError("cursor", "is not a cursor this API issued for this metric; start without one")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("v") != 1 or data.get("m") != metric:
            raise invalid
        micros = data.get("t")
        if not isinstance(micros, int) or isinstance(micros, bool):
            raise invalid
        after = _EPOCH + timedelta(microseconds=micros)
    except (ValueError, TypeError, OverflowError) as exc:  # bad base64, JSON or an instant beyond datetime
        raise invalid from exc
    if not EARLIEST <= after <= LATEST:
        raise invalid
    return after
