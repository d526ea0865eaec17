"""Boundary models of a consciousness check-in: what is submitted and what is answered."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from api.observations.schemas import Rfc3339, UtcDatetime
from core.catalogue import ACVPU_CODES, ACVPU_LOINC, AcvpuLevel

LEVELS: Final = ", ".join(ACVPU_CODES)
_MEANINGS: Final = "A alert, C new confusion, V responds to voice, P responds to pain, U unresponsive"


def _acvpu(value: Any) -> Any:
    # One clear message (and a stable error type) instead of pydantic's literal_error listing.
    if isinstance(value, str) and value in ACVPU_CODES:
        return value
    raise PydanticCustomError(
        "acvpu_level",
        "must be one of {levels} (ACVPU: {meanings})",
        {"levels": LEVELS, "meanings": _MEANINGS},
    )


Level = Annotated[AcvpuLevel, BeforeValidator(_acvpu)]


class ConsciousnessCheckIn(BaseModel):
    """A level of consciousness observed now or a little earlier."""

    model_config = ConfigDict(extra="forbid")

    level: Level = Field(description=f"ACVPU level, one of {LEVELS}: {_MEANINGS}")
    observed_at: Rfc3339 = Field(
        None,
        description="When the patient was observed, RFC 3339 with offset (default: now); "
        "at most 5 minutes ahead and 24 hours back",
    )


class ConsciousnessRecorded(BaseModel):
    """The observation as published for storage and scoring (asynchronous: 202 Accepted)."""

    patient_id: str
    metric: Literal["consciousness"] = "consciousness"
    loinc: str = Field(ACVPU_LOINC, description="LOINC code of the observation")
    level: AcvpuLevel
    value: float = Field(description="The code stored in `observations.value` (A=0, C=1, V=2, P=3, U=4)")
    observed_at: UtcDatetime
    device_id: str = Field(description="The virtual source: `checkin:<user id>` of who entered it")
    news2_points: int = Field(description="What this level adds to NEWS2 (0 for A, 3 otherwise)")


def observed_time(body: ConsciousnessCheckIn, now: datetime) -> datetime:
    return body.observed_at or now
