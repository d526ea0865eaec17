"""Boundary models of break-glass access: the request and the grant answered."""

from __future__ import annotations

import uuid
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.observations.schemas import UtcDatetime

MIN_REASON: Final = 10
MAX_REASON: Final = 1000
MAX_MINUTES: Final = 240  # 4 h; the table allows 12 h, the API asks for less
DEFAULT_MINUTES: Final = 60


class BreakGlassRequest(BaseModel):
    """Why a clinician needs a patient outside their care teams, and for how long."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        min_length=MIN_REASON,
        max_length=MAX_REASON,
        description=f"Why access is needed ({MIN_REASON}-{MAX_REASON} characters, not counting outer spaces); "
        "kept in the audit trail",
    )
    duration_minutes: int = Field(
        DEFAULT_MINUTES, ge=1, le=MAX_MINUTES, description=f"How long the access lasts (1-{MAX_MINUTES} minutes)"
    )

    @field_validator("reason")
    @classmethod
    def _meaningful(cls, value: str) -> str:
        text = value.strip()
        if len(text) < MIN_REASON:
            raise ValueError(f"the reason must have at least {MIN_REASON} characters besides spaces")
        if any(ord(c) < 32 and c not in "\t\n" for c in text):
            raise ValueError("the reason may not hold control characters")
        return text


class BreakGlassGrant(BaseModel):
    """An active (or just opened) break-glass grant."""

    id: uuid.UUID = Field(description="Grant id; every access under it is audited with it")
    patient_id: str
    reason: str
    granted_at: UtcDatetime
    expires_at: UtcDatetime


class BreakGlassList(BaseModel):
    items: list[BreakGlassGrant]
