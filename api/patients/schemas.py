"""Boundary models of the patients API: my patients, the patient summary and observation
rollups."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timedelta
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from api.alerts.schemas import AlertRead, Severity
from api.observations.schemas import Rfc3339, UtcDatetime, known_metric, resolve_range
from core.catalogue import METRIC_NAMES

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 200
MAX_CURSOR_LENGTH: Final = 200
ADHERENCE_DAYS: Final = 7
Bucket = Literal["5m", "15m", "1h", "6h", "1d"]
BUCKETS: Final[dict[str, timedelta]] = {
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "1d": timedelta(days=1),
}
Direction = Literal["rising", "falling", "steady"]


class News2Read(BaseModel):
    """NEWS2 of the latest reading of each parameter (the worker's own scoring)."""

    total: int | None = Field(description="Aggregate score; null when no parameter was measured in the last 24 h")
    risk: Literal["low", "low-medium", "medium", "high"] | None
    scored_at: UtcDatetime | None = Field(description="Time of the newest reading scored")
    missing: list[str] = Field(description="Parameters not scored (no recent reading), by NEWS2 name")


class DeviceStatus(BaseModel):
    """A device bound to the patient now, with its last reading (in the last 7 days)."""

    device_id: str
    device_class: str
    last_reading_at: UtcDatetime | None = Field(description="null: no reading in the last 7 days")
    age_s: int | None = Field(description="Seconds since the last reading")
    silent: bool = Field(description="Silent by the care plan's rule for this class of device")
    battery: float | None = Field(description="Battery level 0-1 the device last reported; null if never")
    battery_at: UtcDatetime | None


class WorstAlert(BaseModel):
    id: uuid.UUID
    rule: str
    severity: Severity
    state: str
    title: str
    opened_at: UtcDatetime


class PatientListItem(BaseModel):
    patient_id: str
    display_name: str
    open_alerts: int = Field(description="Unresolved alerts (open, acknowledged or snoozed)")
    worst_alert: WorstAlert | None = Field(description="The most severe unresolved alert, the oldest of that severity")
    news2: News2Read
    devices: list[DeviceStatus]
    silent_devices: int
    adherence_pct: float | None = Field(
        description=f"Scheduled measurements and doses received over the last {ADHERENCE_DAYS} days, in %; "
        "null when the care plan schedules none"
    )


class PatientList(BaseModel):
    """The care teams' patients: the most severe unresolved alert first, then the most alerts, then id."""

    items: list[PatientListItem]
    next_cursor: str | None = Field(description="Opaque: pass as `cursor` for the next page; null on the last page")


class RollupBucket(BaseModel):
    start: UtcDatetime = Field(description="Start of the bucket (UTC)")
    n: int
    mean: float
    min: float
    max: float


class VitalLatest(BaseModel):
    """The latest value of one vital sign, its age and its 24-hour trend."""

    metric: str
    unit: str
    value: float
    ts: UtcDatetime
    age_s: int
    trend: list[RollupBucket] = Field(description="Hourly buckets of the last 24 h, oldest first")
    change_24h: float | None = Field(
        description="Least-squares slope of the hourly means over 24 h, in the metric's unit; null below 3 buckets"
    )
    direction: Direction | None


class ScheduleAdherenceRead(BaseModel):
    schedule: str = Field(description="measurement:<metric> or dose:<dose_id>")
    kind: Literal["measurement", "dose"]
    metric: str
    dose_id: str | None
    expected: int = Field(description="Scheduled slots whose window closed in the period")
    met: int = Field(description="Of those, slots that received what they required")
    pct: float | None


class AdherenceRead(BaseModel):
    days: int
    measurement_pct: float | None = Field(description="null when no measurement is scheduled")
    medication_pct: float | None = Field(description="null when no dose is scheduled")
    schedules: list[ScheduleAdherenceRead]


class CompletenessRead(BaseModel):
    """Data completeness of the last 24 h: for each continuous device (a wearable), the share
    of the 24 hours that hold at least one of its readings."""

    hours: int
    devices: dict[str, float] = Field(description="device id -> share of hours with data, 0-1")
    overall: float | None = Field(description="Mean over continuous devices; null without any")


class PatientSummary(BaseModel):
    patient_id: str
    display_name: str
    generated_at: UtcDatetime
    vitals: list[VitalLatest] = Field(description="Each metric measured in the last 7 days")
    news2: News2Read
    open_alerts: list[AlertRead]
    adherence: AdherenceRead
    completeness: CompletenessRead
    devices: list[DeviceStatus]


class RollupQuery(BaseModel):
    """Query parameters of an observation rollup."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(
        description=f"One of: {', '.join(METRIC_NAMES)}", json_schema_extra={"enum": list(METRIC_NAMES)}
    )
    bucket: Bucket = Field("1h", description="Bucket width")
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

    _known_metric = field_validator("metric")(known_metric)

    @model_validator(mode="after")
    def _resolve_range(self) -> RollupQuery:
        self.start, self.end = resolve_range(self.start, self.end)
        return self

    @property
    def range(self) -> tuple[datetime, datetime]:
        assert self.start is not None
        assert self.end is not None
        return self.start, self.end


class RollupPage(BaseModel):
    """Buckets of one metric in [start, end) that hold readings, oldest first (`time_bucket`,
    aligned to UTC midnight)."""

    patient_id: str
    metric: str
    unit: str
    bucket: Bucket
    start: UtcDatetime
    end: UtcDatetime
    items: list[RollupBucket]


# --- my patients cursor ----------------------------------------------------------------------
def encode_cursor(rank: int, open_alerts: int, patient_id: str) -> str:
    raw = json.dumps({"v": 1, "r": rank, "n": open_alerts, "p": patient_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int, str] | None:
    """(severity rank, open alerts, patient id) of the last item of the previous page; None if not ours."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        return None
    if not isinstance(data, dict) or data.get("v") != 1:
        return None
    rank, count, patient = data.get("r"), data.get("n"), data.get("p")
    if not (isinstance(rank, int) and isinstance(count, int) and isinstance(patient, str)):
        return None
    if isinstance(rank, bool) or isinstance(count, bool) or not -1 <= rank <= 4 or not 0 <= count <= 10**9:
        return None
    if not 1 <= len(patient) <= 64:
        return None
    return rank, count, patient
