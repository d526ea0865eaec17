"""Boundary models of devices: provisioning, binding, the device read and its page."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.observations.schemas import Rfc3339, UtcDatetime
from core.catalogue import DEVICE_CLASSES

DEVICE_ID_PATTERN: Final = r"^[A-Za-z0-9_.-]{1,64}$"
PATIENT_ID_PATTERN: Final = r"^[^\x00-\x1f]{1,64}$"
MAX_LIMIT: Final = 500

DeviceId = Annotated[str, Field(pattern=DEVICE_ID_PATTERN, description="Device id: letters, digits, _ . - (1-64)")]
PatientRef = Annotated[str, Field(pattern=PATIENT_ID_PATTERN, description="Patient id")]


class _Window(BaseModel):
    valid_from: Rfc3339 = Field(
        None,
        description="When the binding starts, RFC 3339 with offset (default now)",
        json_schema_extra={"format": "date-time"},
    )
    valid_to: Rfc3339 = Field(
        None, description="When the binding ends (default: open)", json_schema_extra={"format": "date-time"}
    )

    @model_validator(mode="after")
    def _ordered(self) -> _Window:
        if self.valid_from is not None and self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        return self


class DeviceProvision(_Window):
    """A new device (or a re-issue of a device's credentials) bound to a patient."""

    model_config = ConfigDict(extra="forbid")

    device_id: DeviceId
    patient_id: PatientRef
    device_class: str = Field(
        description=f"One of: {', '.join(DEVICE_CLASSES)}", json_schema_extra={"enum": list(DEVICE_CLASSES)}
    )
    model: str = Field("", max_length=100, pattern=r"^[^\x00-\x1f]*$", description="Make and model, free text")


class DeviceBind(_Window):
    """Bind an existing device to a patient; its credentials stay as they are."""

    model_config = ConfigDict(extra="forbid")

    patient_id: PatientRef


class DeviceCredentialsRead(BaseModel):
    """The device's MQTT credentials: shown this once, never stored in clear by the platform."""

    device_id: str
    patient_id: str
    device_class: str
    username: str
    password: str = Field(description="The device secret; it cannot be read again (provision again to re-issue)")


class Binding(BaseModel):
    patient_id: str
    valid_from: UtcDatetime
    valid_to: UtcDatetime | None


class DeviceRead(BaseModel):
    device_id: str
    device_class: str
    model: str
    created_at: UtcDatetime
    revoked_at: UtcDatetime | None
    binding: Binding | None = Field(description="The open binding, else the latest one; null when never bound")
    last_seen: UtcDatetime | None = Field(
        description="Time of the newest stored reading of the device for the bound patient (last 30 days)"
    )


class DevicePage(BaseModel):
    items: list[DeviceRead]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class DeviceQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(100, ge=1, le=MAX_LIMIT, description=f"At most this many devices (max {MAX_LIMIT})")
    cursor: str | None = Field(
        None, pattern=DEVICE_ID_PATTERN, description="`next_cursor` of the previous page (devices are in id order)"
    )


def window(body: _Window) -> tuple[datetime | None, datetime | None]:
    return body.valid_from, body.valid_to
