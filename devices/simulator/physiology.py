"""Patient physiology: vectorised numpy models of heart rate, respiration rate, SpO2, body
temperature, blood pressure, weight and glucose for a population of patients.

The model is stateless: a vital sign is a pure function of the patient's parameters and
the simulated time (baseline + circadian rhythm + slow random variation + meals and
activity + scenario offsets, then physiological coupling), and measurement noise is a
pure function of (seed, device, tick, metric) through a counter-based hash. So a fixed
seed gives the same readings whatever the order, batching or timing of evaluation, and a
device that was offline can compute exactly what it would have measured.

Coupling: fever raises heart rate (~10/min per °C) and respiration rate; desaturation
raises heart and respiration rate. Cohorts: healthy, COPD (SpO2 target 88-92 %, NEWS2
scale 2, some on oxygen), heart failure, hypertension, diabetes.

Medication: a diabetes patient's pill-bottle doses are mealtime rapid-acting insulin. A dose
taken lowers glucose (onset 15 min, peak 1 h, over after about 5 h: `dose_response`) by up
to about the patient's meal rise; a missed dose leaves the meal's rise untreated on top of
the untreated baseline, so post-meal glucose can pass 250 mg/dL. Which doses were taken is
the pill bottle's schedule (`schedule.day_events`), so the engine supplies their times.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from core.catalogue import CATALOGUE

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
KeyArray = npt.NDArray[np.uint64]
Effects = tuple[FloatArray, FloatArray, FloatArray]

METRICS: Final = (
    "heart_rate",
    "resp_rate",
    "spo2",
    "body_temp",
    "bp_systolic",
    "bp_diastolic",
    "body_weight",
    "glucose",
)
HR, RR, SPO2, TEMP, SBP, DBP, WEIGHT, GLUCOSE = range(8)
N_METRICS: Final = len(METRICS)
CANONICAL_UNITS: Final = tuple(CATALOGUE[m].unit for m in METRICS)

# Measurement noise (one standard deviation) per metric; glucose is relative (meter error).
NOISE_SD: Final = np.array([2.0, 0.9, 0.7, 0.08, 5.0, 4.0, 0.2, 0.04])
# Values a sensor can report (beyond them it saturates); resolution of the reported value.
SENSOR_LOW: Final = np.array([25, 4, 60, 33.0, 60, 30, 20.0, 20])
SENSOR_HIGH: Final = np.array([240, 60, 100, 42.5, 260, 160, 300.0, 600])
RESOLUTION: Final = np.array([1, 1, 1, 0.1, 1, 1, 0.1, 1])

# Circadian rhythm: amplitude and hour of the peak (UTC is used as the patients' local time).
CIRCADIAN_AMPLITUDE: Final = np.array([5.0, 0.8, 0.3, 0.3, 7.0, 5.0, 0.4, 6.0])
CIRCADIAN_PEAK_HOUR: Final = np.array([16.0, 15.0, 14.0, 17.5, 14.0, 14.0, 20.0, 6.0])
# Slow random variation (sum of sinusoids with random periods): standard deviation.
SLOW_SD: Final = np.array([4.0, 1.0, 0.6, 0.1, 5.0, 3.5, 0.3, 8.0])
SLOW_COMPONENTS: Final = 3
MEAL_HOURS: Final = (7.5, 12.5, 18.5)
MEAL_PEAK_H: Final = 0.75
# Rapid-acting (mealtime) insulin: onset, peak and end of action, hours after the dose.
INSULIN_ONSET_H: Final = 0.25
INSULIN_PEAK_H: Final = 1.0
INSULIN_END_H: Final = 5.0


@dataclass(frozen=True, slots=True)
class Cohort:
    """A kind of patient: baseline distribution, devices, medication and NEWS2 settings."""

    name: str
    mean: tuple[float, ...]
    sd: tuple[float, ...]
    devices: tuple[str, ...]
    dose_hours: tuple[float, ...] = ()
    adherence: float = 0.95
    oxygen_share: float = 0.0
    news2_scale: int = 1
    meal_rise: float = 30.0
    # Peak glucose lowering of one dose, as a share of the patient's meal rise (0: the
    # cohort's medication does not act on glucose).
    dose_glucose_drop: float = 0.0
    medication: str = ""  # the pill bottle's dose id (one medication schedule in the care plan)


COHORTS: Final[dict[str, Cohort]] = {
    c.name: c
    for c in (
        Cohort("healthy", (68, 14, 97.5, 36.75, 118, 76, 74, 92), (7, 1.5, 0.7, 0.12, 9, 6, 12, 6), ("wearable",)),
        Cohort(
            "copd",
            (86, 19, 90.5, 36.8, 132, 80, 70, 98),
            (7, 1.5, 0.8, 0.12, 10, 6, 12, 8),
            ("wearable", "pulse_oximeter", "pill_bottle"),
            (8.0, 20.0),
            0.85,
            0.3,
            2,
            medication="inhaler",
        ),
        Cohort(
            "heart_failure",
            (78, 17, 95.5, 36.7, 116, 70, 86, 104),
            (8, 1.5, 0.8, 0.12, 10, 6, 14, 8),
            ("wearable", "scale", "bp_cuff", "pill_bottle"),
            (8.0, 20.0),
            0.88,
            medication="diuretic",
        ),
        Cohort(
            "hypertension",
            (74, 15, 97.0, 36.75, 148, 93, 88, 100),
            (7, 1.5, 0.7, 0.12, 9, 6, 14, 8),
            ("wearable", "bp_cuff", "pill_bottle"),
            (8.0,),
            0.85,
            medication="antihypertensive",
        ),
        # Glucose mean is the untreated level; mealtime insulin with each meal brings it down.
        Cohort(
            "diabetes",
            (76, 15, 97.0, 36.75, 132, 82, 92, 150),
            (7, 1.5, 0.7, 0.12, 10, 6, 15, 16),
            ("wearable", "glucometer", "pill_bottle"),
            MEAL_HOURS,
            0.88,
            meal_rise=95.0,
            dose_glucose_drop=1.0,
            medication="mealtime-insulin",
        ),
    )
}


# --- counter-based noise ----------------------------------------------------------------------
_C1: Final = np.uint64(0xBF58476D1CE4E5B9)
_C2: Final = np.uint64(0x94D049BB133111EB)
_GOLDEN: Final = np.uint64(0x9E3779B97F4A7C15)
_U53: Final = 2.0**-53


def stable_key(seed: int, name: str) -> int:
    """A 64-bit key derived from the seed and an identifier (independent of ordering)."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest(), "big")


def _mix(z: KeyArray) -> KeyArray:
    """splitmix64 finaliser, elementwise on uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _C1
    z = (z ^ (z >> np.uint64(27))) * _C2
    return z ^ (z >> np.uint64(31))


def noise_keys(stream: KeyArray | int, counter: npt.ArrayLike) -> KeyArray:
    """One key per (stream, counter) pair; broadcasts."""
    s = np.atleast_1d(np.asarray(stream, dtype=np.uint64))
    c = np.atleast_1d(np.asarray(counter, dtype=np.uint64))
    return _mix(s ^ _mix(c * _GOLDEN + _C2))


def _salt(salt: int) -> np.uint64:
    # Array arithmetic: numpy wraps uint64 overflow silently for arrays, warns for scalars.
    return np.uint64(_mix(np.array([salt], dtype=np.uint64) * _GOLDEN)[0])


def uniforms(keys: KeyArray, salt: int) -> FloatArray:
    """Uniform deviates in (0, 1), one per key; `salt` selects an independent stream."""
    u = _mix(keys ^ _salt(salt)) >> np.uint64(11)
    return (u.astype(np.float64) + 0.5) * _U53


def normals(keys: KeyArray, salt: int) -> FloatArray:
    """Standard normal deviates, one per key (Box-Muller on two hashed uniforms)."""
    u1 = uniforms(keys, 2 * salt + 1)
    u2 = uniforms(keys, 2 * salt + 2)
    result: FloatArray = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return result


# --- the population ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PatientSpec:
    patient_id: str
    cohort: str = "healthy"
    on_oxygen: bool | None = None  # prescribed at provisioning; None: drawn from the seed


class Population:
    """Per-patient model parameters as arrays; row i is patient i."""

    def __init__(self, patients: Sequence[PatientSpec], seed: int) -> None:
        n = len(patients)
        self.seed = seed
        self.ids = [p.patient_id for p in patients]
        self.index = {pid: i for i, pid in enumerate(self.ids)}
        self.cohorts = [COHORTS[p.cohort] for p in patients]
        self.base = np.zeros((n, N_METRICS))
        self.slow_amp = np.zeros((n, N_METRICS, SLOW_COMPONENTS))
        self.slow_omega = np.zeros((n, N_METRICS, SLOW_COMPONENTS))
        self.slow_phase = np.zeros((n, N_METRICS, SLOW_COMPONENTS))
        self.activity_omega = np.zeros(n)
        self.activity_phase = np.zeros(n)
        self.meal_rise = np.zeros(n)
        self.on_oxygen = np.zeros(n, dtype=bool)
        self.news2_scale = np.ones(n, dtype=np.int64)
        self.adherence = np.zeros(n)
        self.dose_drop = np.zeros(n)
        for i, (spec, cohort) in enumerate(zip(patients, self.cohorts, strict=True)):
            rng = np.random.default_rng(stable_key(seed, "patient:" + spec.patient_id))
            base = np.asarray(cohort.mean) + np.asarray(cohort.sd) * rng.standard_normal(N_METRICS)
            base[SPO2] = min(base[SPO2], 99.0)
            self.base[i] = base
            periods = np.exp(rng.uniform(np.log(1200), np.log(8 * 3600), (N_METRICS, SLOW_COMPONENTS)))
            periods[WEIGHT] = rng.uniform(2, 9, SLOW_COMPONENTS) * 86400.0
            self.slow_omega[i] = 2 * np.pi / periods
            self.slow_phase[i] = rng.uniform(0, 2 * np.pi, (N_METRICS, SLOW_COMPONENTS))
            self.slow_amp[i] = (SLOW_SD * np.sqrt(2.0 / SLOW_COMPONENTS))[:, None] * rng.uniform(
                0.5, 1.5, (N_METRICS, SLOW_COMPONENTS)
            )
            self.activity_omega[i] = 2 * np.pi / rng.uniform(60 * 60, 150 * 60)
            self.activity_phase[i] = rng.uniform(0, 2 * np.pi)
            self.meal_rise[i] = cohort.meal_rise * rng.uniform(0.7, 1.3)
            drawn = rng.random() < cohort.oxygen_share
            self.on_oxygen[i] = drawn if spec.on_oxygen is None else spec.on_oxygen
            self.news2_scale[i] = cohort.news2_scale
            self.adherence[i] = cohort.adherence
            self.dose_drop[i] = cohort.dose_glucose_drop * self.meal_rise[i] * rng.uniform(0.85, 1.15)

    def __len__(self) -> int:
        return len(self.ids)

    def true_state(self, pidx: IntArray, t: FloatArray, effects: Effects | None = None) -> FloatArray:
        """Noise-free vital signs, shape (len(t), N_METRICS), at simulated epoch seconds `t`.

        `effects` are scenario changes: additive offsets, then a blend towards targets
        (weight 0..1 per metric), applied before the coupling.
        """
        base = self.base[pidx]
        hour = (t % 86400.0) / 3600.0
        x = base + CIRCADIAN_AMPLITUDE * np.cos(2 * np.pi * (hour[:, None] - CIRCADIAN_PEAK_HOUR) / 24.0)
        angles = self.slow_omega[pidx] * t[:, None, None] + self.slow_phase[pidx]
        x += (self.slow_amp[pidx] * np.sin(angles)).sum(axis=2)
        # Daytime activity bouts raise heart and respiration rate.
        daytime = np.clip(np.sin(np.pi * (hour - 7.0) / 15.0), 0.0, None)
        bout = np.sin(self.activity_omega[pidx] * t + self.activity_phase[pidx]).clip(0.0, None) ** 6
        activity = 20.0 * bout * daytime
        x[:, HR] += activity
        x[:, RR] += 0.12 * activity
        x[:, GLUCOSE] += self.meal_rise[pidx] * _meal_response(hour)
        if effects is not None:
            add, weight, target = effects
            x += add
            x = x * (1.0 - weight) + target * weight
        # Coupling: fever and desaturation drive heart and respiration rate.
        fever = np.clip(x[:, TEMP] - base[:, TEMP] - 0.2, 0.0, None)
        desaturation = np.clip(base[:, SPO2] - x[:, SPO2] - 1.0, 0.0, None)
        x[:, HR] += 10.0 * fever + 1.3 * desaturation
        x[:, RR] += 2.5 * fever + 0.45 * desaturation
        x[:, SPO2] = np.minimum(x[:, SPO2], 100.0)
        result: FloatArray = x
        return result

    def measure(self, true: FloatArray, keys: KeyArray) -> FloatArray:
        """Add measurement noise (one key per row) and round to what a sensor reports."""
        noise = np.stack([normals(keys, m) for m in range(N_METRICS)], axis=1) * NOISE_SD
        noise[:, GLUCOSE] *= true[:, GLUCOSE]
        values = np.clip(true + noise, SENSOR_LOW, SENSOR_HIGH)
        rounded: FloatArray = np.round(values / RESOLUTION) * RESOLUTION
        return rounded


def dose_response(hours_since: FloatArray) -> FloatArray:
    """Glucose-lowering action of one rapid-acting insulin dose (0..1 of its peak) by hours
    since it was taken: nothing before the onset, peak at INSULIN_PEAK_H, ~3 % at the end."""
    tau = (hours_since - INSULIN_ONSET_H) / (INSULIN_PEAK_H - INSULIN_ONSET_H)
    inside = (hours_since > INSULIN_ONSET_H) & (hours_since < INSULIN_END_H)
    result: FloatArray = np.where(inside, tau * np.exp(1.0 - tau), 0.0)
    return result


def glucose_lowering(drop: float, t: FloatArray, dose_times: FloatArray) -> FloatArray:
    """Total lowering (mg/dL) at times `t` of doses taken at `dose_times` (simulated seconds)."""
    if drop <= 0 or len(dose_times) == 0:
        return np.zeros(len(t))
    since = (t[:, None] - np.asarray(dose_times)[None, :]) / 3600.0
    result: FloatArray = drop * dose_response(since).sum(axis=1)
    return result


def _meal_response(hour: FloatArray) -> FloatArray:
    """Glucose rise after meals (0..1 of the patient's peak rise), a gamma-like curve."""
    total = np.zeros_like(hour)
    for meal in MEAL_HOURS:
        since = ((hour - meal) % 24.0) / MEAL_PEAK_H
        total += np.where(since < 8.0, since * np.exp(1.0 - since), 0.0)
    result: FloatArray = total
    return result
