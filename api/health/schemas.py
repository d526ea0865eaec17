"""Answers of the probes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class CheckResult(BaseModel):
    """One dependency check."""

    ok: bool = Field(description="True when the dependency answered in time")
    detail: str = Field(description="What was checked, or why it failed")
    duration_ms: float = Field(description="How long the check took")


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    checks: dict[str, CheckResult] | None = Field(
        None, description="Each dependency check; only for ops and admin callers"
    )
