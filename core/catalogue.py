"""The vital-sign catalogue: metrics, their LOINC codes, canonical UCUM units, accepted
input units with their conversions, and plausibility ranges (ARCHITECTURE.md §4).

Plausibility limits reject sensor garbage at ingest. Clinical limits, which raise alerts,
live in the care plan and are a different thing.

Consciousness (ACVPU) is a coded observation, not a measurement: the `observations.value`
double column holds its level's code (`ACVPU_CODES`: A=0, C=1, V=2, P=3, U=4, in order of
worsening; unit `{ACVPU}`), and only those five codes are plausible. It is entered by people
(patient check-in, caregiver, clinician: `POST /api/v1/patients/{id}/consciousness`), not
measured by devices; a device may still send it like any metric (same unit and codes), and the
simulated devices do not (`entered=True`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

# mg/dL per mmol/L of glucose (molar mass 180.16 g/mol).
GLUCOSE_MGDL_PER_MMOLL: Final = 18.016
KG_PER_LB: Final = 0.45359237


def _identity(value: float) -> float:
    return value


def _fahrenheit_to_celsius(value: float) -> float:
    return (value - 32.0) * 5.0 / 9.0


def _pounds_to_kg(value: float) -> float:
    return value * KG_PER_LB


def _mmol_to_mgdl(value: float) -> float:
    return value * GLUCOSE_MGDL_PER_MMOLL


@dataclass(frozen=True, slots=True)
class Metric:
    """One kind of measurement the platform accepts."""

    name: str
    loinc: str | None
    unit: str
    low: float
    high: float
    display: str
    # Accepted input units -> conversion into the canonical unit.
    conversions: dict[str, Callable[[float], float]] = field(default_factory=dict)
    is_event: bool = False
    # A coded observation: the only plausible values (codes), e.g. ACVPU_CODES' values.
    codes: frozenset[float] | None = None
    # Entered by a person (check-in, caregiver, clinician) rather than measured by a device.
    entered: bool = False

    def normalise(self, value: float, unit: str) -> float | None:
        """Return the value in the canonical unit, or None when the unit is not accepted."""
        if unit == self.unit:
            return value
        convert = self.conversions.get(unit)
        return None if convert is None else convert(value)

    def plausible(self, value: float) -> bool:
        """True when a canonical value is finite and inside the plausibility range."""
        if self.codes is not None:
            return value in self.codes
        return math.isfinite(value) and self.low <= value <= self.high


# ACVPU (NEWS2, RCP 2017): Alert, new Confusion, Voice, Pain, Unresponsive. The code is what
# `observations.value` stores; the order is one of worsening, and NEWS2 scores all but A as 3.
AcvpuLevel = Literal["A", "C", "V", "P", "U"]
ACVPU_CODES: Final[dict[AcvpuLevel, float]] = {"A": 0.0, "C": 1.0, "V": 2.0, "P": 3.0, "U": 4.0}
_ACVPU_LEVELS: Final[dict[float, AcvpuLevel]] = {code: level for level, code in ACVPU_CODES.items()}
# LOINC 67775-7 "Level of responsiveness" (its answers are AVPU; NEWS2 adds C), the code FHIR
# profiles use for this observation, e.g. the Philippine Road Safety FHIR IG
# (build.fhir.org/ig/UPM-NTHC/PH-RoadSafetyIG, profile rs-observation-level-of-consciousness:
# code 67775-7 "Level of responsiveness", value from a SNOMED CT AVPU value set).
ACVPU_LOINC: Final = "67775-7"
# SNOMED CT answers (reference/clinical.md; voice from the same IG's value set). "New confusion"
# has no code confirmed here: an export must map it before it sends C.
ACVPU_SNOMED: Final[dict[AcvpuLevel, str | None]] = {
    "A": "248234008",
    "C": None,
    "V": "300202002",
    "P": "450847001",
    "U": "422768004",
}


def acvpu_level(code: float) -> AcvpuLevel | None:
    """The ACVPU letter of a stored code; None for a value that is not one of the codes."""
    return _ACVPU_LEVELS.get(code)


CATALOGUE: Final[dict[str, Metric]] = {
    m.name: m
    for m in (
        Metric("heart_rate", "8867-4", "/min", 20, 300, "Heart rate"),
        Metric("resp_rate", "9279-1", "/min", 2, 80, "Respiratory rate"),
        Metric("spo2", "59408-5", "%", 50, 100, "Oxygen saturation"),
        Metric(
            "body_temp",
            "8310-5",
            "Cel",
            30,
            45,
            "Body temperature",
            conversions={"[degF]": _fahrenheit_to_celsius, "degF": _fahrenheit_to_celsius},
        ),
        Metric("bp_systolic", "8480-6", "mm[Hg]", 50, 300, "Systolic blood pressure"),
        Metric("bp_diastolic", "8462-4", "mm[Hg]", 20, 200, "Diastolic blood pressure"),
        Metric(
            "body_weight",
            "29463-7",
            "kg",
            2,
            400,
            "Body weight",
            conversions={"[lb_av]": _pounds_to_kg},
        ),
        Metric(
            "glucose",
            "2339-0",
            "mg/dL",
            10,
            1000,
            "Glucose",
            conversions={"mmol/L": _mmol_to_mgdl},
        ),
        Metric("medication_taken", None, "1", 1, 1, "Medication dose taken", is_event=True),
        Metric(
            "consciousness",
            ACVPU_LOINC,
            "{ACVPU}",
            min(ACVPU_CODES.values()),
            max(ACVPU_CODES.values()),
            "Level of consciousness (ACVPU)",
            codes=frozenset(ACVPU_CODES.values()),
            entered=True,
        ),
    )
}

METRIC_NAMES: Final = tuple(CATALOGUE)


def metric(name: str) -> Metric | None:
    """Look a metric up by name; None for an unknown metric."""
    return CATALOGUE.get(name)


# The kinds of device a patient may be given; the `devices.device_class` CHECK constraint
# (migration 0001) lists the same names, and each care plan has a silence policy per class.
DeviceClass = Literal["wearable", "bp_cuff", "pulse_oximeter", "scale", "glucometer", "pill_bottle", "thermometer"]
DEVICE_CLASSES: Final[tuple[DeviceClass, ...]] = get_args(DeviceClass)
