"""Boundary models of the patient's own routes: My health and My care plan (ADR 0027).

Every text field is in plain words from the portal's catalogue (api/portal/text_*.py); no
field carries a detection rule id.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from api.observations.schemas import UtcDatetime
from api.patients.schemas import Direction, RollupBucket

Status = Literal["above", "below", "within", "no_limit"]


class LimitLine(BaseModel):
    """A level of the care plan that tells the care team when crossed."""

    value: float
    direction: Literal["low", "high"] = Field(description="low: told below the value; high: told above it")
    label: str = Field(description="Short label drawn on the chart")


class MyVital(BaseModel):
    """The latest reading of one vital sign with what it means."""

    metric: str = Field(description="Catalogue name of the metric")
    name: str = Field(description="The metric in plain words")
    unit: str = Field(description="The unit in plain words")
    value: float
    ts: UtcDatetime
    age_s: int
    age_words: str
    status: Status = Field(description="Where the latest reading lies against the care plan's limits")
    meaning: str = Field(description="What the reading means and what happens next")
    safety: str | None = Field(description="When to call for help; given when the reading is beyond a limit")
    trend_words: str | None = Field(description="How it changed over the last day; null below 3 hours with data")
    direction: Direction | None
    limits: list[LimitLine]
    trend_24h: list[RollupBucket] = Field(description="Hourly means of the last 24 h, oldest first")
    trend_7d: list[RollupBucket] = Field(description="Hourly means of the last 7 days, oldest first")


class MyNews2(BaseModel):
    """The NEWS2 early-warning score, explained."""

    total: int | None
    risk: Literal["low", "low-medium", "medium", "high"] | None
    words: str
    about: str
    missing: bool = Field(description="Some parameters were not scored (no recent reading)")


class MyAlert(BaseModel):
    """An unresolved alert as the patient sees it: what happened and who is on it."""

    id: uuid.UUID
    what: str
    status: str
    opened_at: UtcDatetime
    since_words: str


class MyDevice(BaseModel):
    device_id: str
    kind: str = Field(description="The kind of device in plain words")
    last_reading_at: UtcDatetime | None
    seen_words: str
    battery_pct: int | None
    battery_words: str
    battery_low: bool
    silent: bool
    advice: str | None = Field(description="What to do, given when the device is silent or its battery low")


class MyHealth(BaseModel):
    """The signed-in patient's own readings, score, alerts and devices."""

    patient_id: str
    generated_at: UtcDatetime
    vitals: list[MyVital] = Field(description="Each vital measured in the last 7 days")
    news2: MyNews2
    alerts: list[MyAlert]
    devices: list[MyDevice]
    silent_help: str = Field(description="What to do when a device goes quiet")


class MyMeasurement(BaseModel):
    metric: str
    name: str
    times: list[str] = Field(description="Local times of day HH:MM in the plan's time zone; empty for a daily count")
    per_day: int | None
    words: str


class MyDose(BaseModel):
    dose_id: str
    times: list[str] = Field(description="Local times of day HH:MM in the plan's time zone")
    words: str


class MyWeek(BaseModel):
    """One week of adherence: days fully kept, and planned slots that received what they needed."""

    start: date = Field(description="First local day of the week")
    end: date = Field(description="Last local day of the week (today for the current week)")
    days_with_plan: int = Field(description="Days with at least one planned slot closed")
    days_kept: int = Field(description="Of those, days on which every closed slot was kept")
    days_covered_pct: float | None = Field(description="days_kept / days_with_plan in %; null without a plan")
    expected: int = Field(description="Planned readings and doses whose window closed in the week")
    met: int
    received_pct: float | None = Field(description="met / expected in %; null without any")
    words: list[str]


class MyStreak(BaseModel):
    current: int = Field(description="Consecutive local days fully kept, up to yesterday (today counts once kept)")
    best: int = Field(description="Longest run of fully kept days in the last 4 weeks")
    words: list[str]


class MyCarePlan(BaseModel):
    """The signed-in patient's care plan in plain words, with adherence and lessons."""

    patient_id: str
    version: int
    timezone: str
    updated_at: UtcDatetime | None
    intro: str
    measurements: list[MyMeasurement]
    doses: list[MyDose]
    limits: list[str] = Field(description="When the care team is told, one sentence each")
    note: str = Field(description="The care team's own words on why the limits are set as they are; may be empty")
    weeks: list[MyWeek] = Field(description="The last 4 weeks, oldest first")
    streak: MyStreak
    conditions: list[str] = Field(description="Lessons that fit the plan (heart_failure, copd, hypertension, diabetes)")
