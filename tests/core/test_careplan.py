"""The care plan model (core/careplan.py): defaults from reference/clinical.md, JSON, validation.

Lives here because the detectors are its first reader; it would move to tests/core/."""

from __future__ import annotations

from datetime import time

import msgspec
import pytest

from core.careplan import (
    CAREPLAN_SCHEMA,
    CarePlan,
    Limit,
    MeasurementSchedule,
    decode_care_plan,
    default_care_plan,
    encode_care_plan,
)
from core.rules import Rule


def test_default_plan_carries_the_clinical_reference_numbers() -> None:
    plan = default_care_plan("p1")
    assert (plan.patient_id, plan.version, plan.schema) == ("p1", 0, CAREPLAN_SCHEMA)
    spo2 = next(lim for lim in plan.limits if lim.rule is Rule.SPO2_LOW)
    assert (spo2.direction, spo2.raise_at, spo2.sustained_s, spo2.clear_at, spo2.clear_sustained_s) == (
        "low",
        90,
        600,
        92,
        600,
    )
    assert plan.news2.spo2_scale == 1
    assert plan.on_oxygen is False
    assert (plan.bp_crisis.systolic, plan.bp_crisis.diastolic) == (180, 120)
    assert plan.bp_crisis.confirm_window_s > plan.bp_crisis.min_gap_s
    assert (plan.hf_weight.enabled, plan.hf_weight.gain_1d_kg, plan.hf_weight.gain_7d_kg) == (False, 1.4, 2.3)
    assert (plan.glucose.level1_below, plan.glucose.level2_below, plan.glucose.high_above) == (70, 54, 250)
    assert (plan.silence["wearable"].warn_s, plan.silence["wearable"].urgent_s) == (900, 1800)
    assert plan.measurements == ()
    assert plan.medications == ()


def test_round_trips_through_json() -> None:
    plan = msgspec.structs.replace(
        default_care_plan("p1"),
        version=3,
        timezone="Europe/Paris",
        measurements=(MeasurementSchedule(metric="body_weight", times_of_day=(time(7, 30),)),),
    )
    assert decode_care_plan(encode_care_plan(plan)) == plan


def test_a_minimal_json_plan_gets_the_defaults() -> None:
    plan = decode_care_plan(
        b'{"patient_id": "p9", "version": 2, "news2": {"spo2_scale": 2}, "on_oxygen": true,'
        b' "measurements": [{"metric": "spo2", "times_of_day": ["08:00:00", "20:00:00"]}]}'
    )
    assert plan.news2.spo2_scale == 2
    assert plan.news2.max_age_s == default_care_plan("p9").news2.max_age_s
    assert plan.measurements[0].times_of_day == (time(8), time(20))
    assert plan.limits == default_care_plan("p9").limits


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b'{"patient_id": "p", "timezone": "Mars/Olympus"}', "unknown time zone"),
        (b'{"patient_id": "p", "schema": 2}', "unsupported care plan schema"),
        (b'{"patient_id": "p", "effective_from": "2026-01-01T00:00:00"}', "timezone-aware"),
        (b'{"patient_id": "p", "measurements": [{"metric": "spo2"}]}', "either times_of_day or times_per_day"),
        (b'{"patient_id": "p", "measurements": [{"metric": "mood", "times_per_day": 1}]}', "unknown metric"),
        (b'{"patient_id": "p", "news2": {"spo2_scale": 3}}', r"Invalid enum value 3 - at `\$.news2.spo2_scale`"),
        (b'{"patient_id": "p", "silence": {"toaster": {"mode": "off"}}}', "unknown device class"),
        (b'{"patient_id": "p", "glucose": {"level1_below": 50}}', "level 2 lies below level 1"),
    ],
)
def test_invalid_plans_are_refused_with_a_reason(document: bytes, message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        decode_care_plan(document)


def test_limit_levels_must_leave_a_hysteresis_band_the_right_way_round() -> None:
    with pytest.raises(ValueError, match="clears at or above"):
        Limit(rule=Rule.SPO2_LOW, metric="spo2", direction="low", raise_at=90, clear_at=88)
    with pytest.raises(ValueError, match="clears at or below"):
        Limit(rule=Rule.TEMP_HIGH, metric="body_temp", direction="high", raise_at=39, clear_at=39.5)


def test_one_limit_per_rule() -> None:
    plan = default_care_plan("p1")
    with pytest.raises(ValueError, match="one limit per rule"):
        CarePlan(patient_id="p1", limits=(plan.limits[0], plan.limits[0]))
