"""Boundary models of consents: the state of each tier with its history, and a change."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.observations.schemas import UtcDatetime

Tier = Literal["collect", "share_care_team", "research"]
TierState = Literal["given", "withdrawn", "not_given"]


class ConsentTierRead(BaseModel):
    """Where one tier stands now."""

    tier: Tier
    state: TierState = Field(
        description="`given`: an open grant covers now; `withdrawn`: the last grant was withdrawn; "
        "`not_given`: never granted. `share_care_team` with no choice recorded reads `given` with "
        "`document_version` null: enrolment in the monitoring programme agreed to it (ADR 0024)"
    )
    document_version: str | None = Field(
        description="The document version of the open grant (or of the last one); null for a grant recorded "
        "at enrolment, before versioned documents"
    )
    since: UtcDatetime | None = Field(
        description="When the open grant was given, or the last one withdrawn; for a tier given at enrolment "
        "with no grant recorded, when the patient joined (their first grant), null if unknown"
    )
    current_document_version: str = Field(description="The version a new grant agrees to")
    enforced: bool = Field(
        description="Whether withdrawing this tier changes what the platform does today. `collect`: the bridge "
        "stops taking the patient's readings (ADR 0024 states the bound); `share_care_team`: the care team no "
        "longer sees the patient (record, inbox, lists, alert stream, notifications) except through break-glass; "
        "`research`: nothing uses data for research today"
    )


class ConsentEvent(BaseModel):
    """One step of the history: a grant given, or withdrawn."""

    grant_id: int = Field(description="The grant (one row per grant; a withdrawal closes it)")
    tier: Tier
    action: Literal["given", "withdrawn"]
    at: UtcDatetime
    document_version: str | None = Field(description="The document the grant agreed to (null: at enrolment)")


class ConsentsRead(BaseModel):
    """A patient's consents: each tier now, and every step of the history, newest first."""

    patient_id: str
    tiers: list[ConsentTierRead]
    history: list[ConsentEvent]


class ConsentChange(BaseModel):
    """Give or withdraw one tier."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["give", "withdraw"]
    document_version: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="The document version the patient read and agrees to; required to give, and it must be the "
        "tier's current version (`current_document_version`). Ignored on a withdrawal",
    )
