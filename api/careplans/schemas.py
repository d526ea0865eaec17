"""Boundary models of care plans: the plan read, the change, the what-if and its answer.

The plan itself travels as the JSON of `core.careplan.CarePlan` (the shape of
`rpm.care-plans.v1`), validated by `core.careplan.decode_care_plan` (a refusal answers 422 with msgspec's message,
which names the offending path).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from api.observations.schemas import UtcDatetime

MAX_WHAT_IF_DAYS: Final = 30


PLAN_DESCRIPTION: Final = (
    "A care plan as `core.careplan.CarePlan` defines it (limits with hysteresis, NEWS2 settings, "
    "BP crisis, heart-failure weight, glucose, baselines, measurement and medication schedules, "
    "device silence). `patient_id`, `version` and (on a change) `effective_from` are set by the server; "
    "every other field may be left out for its default, so a plan read may be edited and sent back."
)


class CarePlanRead(BaseModel):
    """A patient's care plan: the stored one, or the default plan (version 0) when none was set."""

    patient_id: str
    version: int = Field(description="Revision of the plan; 0 is the default plan of a patient without one")
    plan: dict[str, Any] = Field(description=PLAN_DESCRIPTION)
    updated_at: UtcDatetime | None = Field(description="When this version was stored (null for the default plan)")
    updated_by: uuid.UUID | None = Field(description="Who stored it (null for the default plan)")


class CarePlanUpdate(BaseModel):
    """A new version of the plan; send the version it replaces (or `If-Match`)."""

    model_config = ConfigDict(extra="forbid")

    plan: dict[str, Any] = Field(description=PLAN_DESCRIPTION)
    version: int | None = Field(
        None,
        ge=0,
        le=2_000_000_000,
        description="The version this change replaces (from the read); a different current version answers 409. "
        'Alternatively send it as `If-Match: "<version>"` (412 when it no longer matches).',
    )


class WhatIfRequest(BaseModel):
    """A proposed plan, replayed with the current one over the patient's stored readings."""

    model_config = ConfigDict(extra="forbid")

    plan: dict[str, Any] = Field(description=PLAN_DESCRIPTION)
    days: int = Field(7, ge=1, le=MAX_WHAT_IF_DAYS, description=f"Replay the last N days (1-{MAX_WHAT_IF_DAYS})")


class RuleAlerts(BaseModel):
    rule: str
    alerts: int = Field(description="Raise detections of this rule (each would open or re-trigger an alert)")
    first_at: UtcDatetime = Field(description="Time of the reading that raised the first one")
    last_at: UtcDatetime = Field(description="Time of the reading that raised the last one")


class PlanOutcome(BaseModel):
    version: int | None = Field(description="The plan's version (null for the proposal)")
    alerts: int = Field(description="Raise detections over the replay, all rules")
    by_rule: list[RuleAlerts]


class WhatIfAnswer(BaseModel):
    """How many alerts each plan would have raised over the same stored readings."""

    patient_id: str
    start: UtcDatetime
    end: UtcDatetime
    readings: int = Field(description="Stored readings replayed")
    current: PlanOutcome
    proposed: PlanOutcome
    difference: int = Field(description="proposed.alerts - current.alerts")
    note: str = Field(
        description="What the replay covers: reading-driven rules (limits, NEWS2, BP crisis, weight, glucose, "
        "baseline); missed measurements, missed doses and device silence are judged on a timer and are not replayed"
    )


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
