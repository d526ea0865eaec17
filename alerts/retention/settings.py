"""Settings of the retention task (a settings group the alert service's settings inherit;
prefix `RPM_`)."""

from __future__ import annotations

from pydantic import Field, field_validator

from core.retention import DEFAULT_RETENTION_DAYS, LONGEST_READER, MIN_RETENTION_DAYS
from core.settings import BaseRpmSettings


class RetentionSettings(BaseRpmSettings):
    retention_enabled: bool = Field(
        True, description="Run the retention task in the alert service (raw observations older than the period dropped)"
    )
    retention_days: int = Field(
        DEFAULT_RETENTION_DAYS,
        description="Days raw observations are kept (part of the clinical record: the programme chooses it; "
        f"at least {MIN_RETENTION_DAYS}, the longest window the platform reads or accepts readings over); "
        "older chunks are dropped whole, so up to one chunk (1 day) more is kept",
    )
    retention_interval_s: float = Field(3600.0, gt=0, description="Seconds between rounds of the retention task")

    @field_validator("retention_days")
    @classmethod
    def _not_below_the_longest_reader(cls, value: int) -> int:
        if value < MIN_RETENTION_DAYS:
            raise ValueError(
                f"retention_days must be at least {MIN_RETENTION_DAYS}: {LONGEST_READER} ({MIN_RETENTION_DAYS} days)"
            )
        return value
