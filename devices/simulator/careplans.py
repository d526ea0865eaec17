"""The care plan of each simulated patient, derived from what the simulator does to them:
the cohort's clinical settings and exactly the schedules its spot devices and pill bottle
follow. `rpm sim provision` publishes these on `rpm.care-plans.v1` (compacted, keyed by
patient id) and the ground truth is computed against the same plans.

- COPD: NEWS2 SpO2 scale 2 (prescribed target 88-92 %), oxygen as the physiology has it,
  and an SpO2-low limit suited to that target (raise < 86 % sustained 10 min, clear at >= 88 %);
- heart failure: weight-gain rules on, with the 3-day window "> 2 kg in 3 days" (ESC 2021
  heart-failure guideline) next to 1.4 kg / 1 day and 2.3 kg / 7 days;
- every cohort: one measurement schedule per spot device, on its primary metric unless a
  continuous device of the patient reports that metric anyway (a wearable's SpO2 would satisfy a
  pulse-oximeter schedule, so such a miss cannot be seen), times of day in UTC (the simulator's
  clock; the optional late glucometer slot is left out), +/- 1 h; one medication schedule for
  the pill bottle's doses, +/- 2 h (the simulator's dose window);
- spot devices and pill bottles are not watched for silence: their missed slots are reported
  by the schedules (silence would report the same miss a second time). Wearables keep the
  15 / 30 min continuous policy.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Final

from core.careplan import (
    DEFAULT_LIMITS,
    CarePlan,
    HfWeightGain,
    Limit,
    MeasurementSchedule,
    MedicationSchedule,
    News2Settings,
    SilencePolicy,
)
from core.rules import Rule, Severity
from devices.simulator.physiology import COHORTS, METRICS
from devices.simulator.schedule import DEVICE_SPECS, DOSE_WINDOW_S, MEASUREMENT_WINDOW_S

PLAN_VERSION: Final = 1
COPD_SPO2_LOW: Final = Limit(
    rule=Rule.SPO2_LOW,
    metric="spo2",
    direction="low",
    raise_at=86,
    clear_at=88,
    sustained_s=600,
    clear_sustained_s=600,
    severity=Severity.HIGH,
)
HF_GAIN_3D_KG: Final = 2.0


def _time_of_day(hours: float) -> time:
    minutes = round(hours * 60)
    return time(minutes // 60, minutes % 60)


def scheduled_metric(device_class: str, device_classes: set[str]) -> str | None:
    """The metric a spot device's schedule watches for this patient, or None when the
    patient has no schedule for it (not a spot device, or a continuous device reports it)."""
    spec = DEVICE_SPECS[device_class]
    if spec.continuous or not spec.hours or not spec.metrics:
        return None
    continuous = {m for c in device_classes if DEVICE_SPECS[c].continuous for m in DEVICE_SPECS[c].metrics}
    primary = spec.metrics[0]
    return None if primary in continuous else METRICS[primary]


def scheduled_hours(device_class: str) -> tuple[float, ...]:
    spec = DEVICE_SPECS[device_class]
    return spec.hours[:-1] if spec.optional_last else spec.hours


def care_plan_for(
    patient_id: str,
    cohort: str,
    on_oxygen: bool,
    device_classes: set[str],
    *,
    effective_from: datetime | None = None,
) -> CarePlan:
    """The plan of one simulated patient."""
    spec = COHORTS[cohort]
    measurements = []
    for device_class in sorted(device_classes):
        metric = scheduled_metric(device_class, device_classes)
        if metric is not None:
            measurements.append(
                MeasurementSchedule(
                    metric=metric,
                    times_of_day=tuple(_time_of_day(h) for h in scheduled_hours(device_class)),
                    tolerance_s=int(MEASUREMENT_WINDOW_S),
                )
            )
    medications = []
    if "pill_bottle" in device_classes and spec.medication:
        medications.append(
            MedicationSchedule(
                dose_id=spec.medication,
                times_of_day=tuple(_time_of_day(h) for h in spec.dose_hours or (8.0,)),
                window_s=int(DOSE_WINDOW_S),
            )
        )
    silence = {
        c: SilencePolicy(mode="continuous") if DEVICE_SPECS[c].continuous else SilencePolicy(mode="off")
        for c in DEVICE_SPECS
    }
    limits = DEFAULT_LIMITS
    news2 = News2Settings()
    if cohort == "copd":
        limits = tuple(COPD_SPO2_LOW if limit.rule is Rule.SPO2_LOW else limit for limit in DEFAULT_LIMITS)
        news2 = News2Settings(spo2_scale=2)
    hf = HfWeightGain(enabled=True, gain_3d_kg=HF_GAIN_3D_KG) if cohort == "heart_failure" else HfWeightGain()
    return CarePlan(
        patient_id=patient_id,
        version=PLAN_VERSION,
        timezone="UTC",
        effective_from=effective_from,
        on_oxygen=on_oxygen,
        news2=news2,
        limits=limits,
        hf_weight=hf,
        measurements=tuple(measurements),
        medications=tuple(medications),
        silence=silence,
    )
