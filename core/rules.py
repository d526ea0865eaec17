"""Names of the detection rules and their severities: the vocabulary shared by the stream
detectors, the alert service, the simulator's ground truth and the API."""

from __future__ import annotations

from enum import StrEnum


class Rule(StrEnum):
    SPO2_LOW = "spo2_low"
    HEART_RATE_HIGH = "heart_rate_high"
    HEART_RATE_LOW = "heart_rate_low"
    RESP_RATE_HIGH = "resp_rate_high"
    TEMP_HIGH = "temp_high"
    NEWS2_LOW = "news2_low"  # aggregate 1-4
    NEWS2_SINGLE_PARAMETER = "news2_single_parameter"  # a 3 in any one parameter
    NEWS2_MEDIUM = "news2_medium"  # 5-6
    NEWS2_HIGH = "news2_high"  # >= 7
    BP_CRISIS_CONFIRMED = "bp_crisis_confirmed"  # >= 180/120 on a repeat reading
    BP_CRISIS_UNCONFIRMED = "bp_crisis_unconfirmed"  # first reading >= 180/120: re-measure
    HF_WEIGHT_GAIN_1D = "hf_weight_gain_1d"
    HF_WEIGHT_GAIN_3D = "hf_weight_gain_3d"  # optional care-plan window
    HF_WEIGHT_GAIN_7D = "hf_weight_gain_7d"
    GLUCOSE_LOW_L1 = "glucose_low_l1"
    GLUCOSE_LOW_L2 = "glucose_low_l2"
    GLUCOSE_HIGH = "glucose_high"
    BASELINE_DEVIATION = "baseline_deviation"
    MEASUREMENT_MISSED = "measurement_missed"
    DOSE_MISSED = "dose_missed"
    DEVICE_SILENT_WARN = "device_silent_warn"
    DEVICE_SILENT_URGENT = "device_silent_urgent"


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"
