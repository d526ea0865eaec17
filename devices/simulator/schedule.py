"""Simulated time and what each device class measures when: the continuous wearable's
ticks, spot devices' daily schedules (BP cuff twice a day, scale daily, glucometer 3-4
times a day, pulse oximeter, thermometer), pill-bottle dose events and battery levels.

Everything here is a deterministic function of the seed, the device and the simulated day.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import numpy as np

from devices.simulator.physiology import DBP, GLUCOSE, HR, RR, SBP, SPO2, TEMP, WEIGHT, stable_key

DAY: Final = 86400.0
DOSE_WINDOW_S: Final = 2 * 3600.0  # a dose not taken within 2 h of its time is missed
MEASUREMENT_WINDOW_S: Final = 3600.0  # a scheduled spot measurement is late after 1 h
WEARABLE_METRICS: Final = (HR, SPO2, RR, TEMP)


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """What a kind of device measures, when, and in which units it may report."""

    name: str
    metrics: tuple[int, ...]
    hours: tuple[float, ...] = ()  # scheduled times of day (spot devices)
    jitter_h: float = 0.25  # standard deviation of the actual time around the schedule
    optional_last: bool = False  # the last slot is taken only every other day on average
    continuous: bool = False
    # metric index -> (alternative accepted unit, share of devices reporting in it)
    alt_units: tuple[tuple[int, str, float], ...] = ()


# The simulator's own description of each device class, keyed by the platform's class names
# (core.catalogue.DEVICE_CLASSES; tests/devices/test_sim_units.py holds the two sets equal).
DEVICE_SPECS: Final[dict[str, DeviceSpec]] = {
    c.name: c
    for c in (
        DeviceSpec("wearable", WEARABLE_METRICS, continuous=True),
        DeviceSpec("pulse_oximeter", (SPO2, HR), (8.0, 14.0, 20.0), 0.4),
        DeviceSpec("bp_cuff", (SBP, DBP, HR), (7.5, 19.5), 0.33),
        DeviceSpec("scale", (WEIGHT,), (7.0,), 0.25, alt_units=((WEIGHT, "[lb_av]", 0.2),)),
        # Fasting, then 1.5 h after breakfast, lunch and dinner (meals 7:30, 12:30, 18:30),
        # where a missed mealtime dose shows.
        DeviceSpec(
            "glucometer",
            (GLUCOSE,),
            (7.25, 9.0, 14.0, 20.0),
            0.2,
            optional_last=True,
            alt_units=((GLUCOSE, "mmol/L", 0.25),),
        ),
        DeviceSpec("thermometer", (TEMP,), (8.0, 20.0), 0.4, alt_units=((TEMP, "[degF]", 0.5),)),
        DeviceSpec("pill_bottle", ()),
    )
}
MEASURE_ADHERENCE: Final = 0.97  # share of scheduled spot measurements a patient takes


def iso(t: float) -> str:
    """RFC 3339 UTC with milliseconds."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SimClock:
    """Maps wall-clock offsets since the run started to simulated epoch seconds.

    Simulated time runs `speed` times faster than the wall clock from `start`. When it
    starts in the past it never overtakes the real clock (the platform refuses readings
    from the future): after catching up it runs in real time.
    """

    def __init__(self, start: float, speed: float, wall0: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start, self.speed, self.wall0 = start, speed, wall0
        self.clamped = speed > 1.0 and start <= wall0
        self.catch_up = (wall0 - start) / (speed - 1.0) if self.clamped else math.inf

    def sim(self, offset: float) -> float:
        if offset <= self.catch_up:
            return self.start + offset * self.speed
        return self.wall0 + offset

    def sim_array(self, offsets: np.ndarray) -> np.ndarray:
        result: np.ndarray = np.where(offsets <= self.catch_up, self.start + offsets * self.speed, self.wall0 + offsets)
        return result

    def offset_of(self, sim_t: float) -> float:
        """Inverse of `sim`: when (seconds after the start) the clock shows `sim_t`."""
        offset = (sim_t - self.start) / self.speed
        if offset <= self.catch_up:
            return offset
        return sim_t - self.wall0

    def speed_at(self, offset: float) -> float:
        return self.speed if offset <= self.catch_up else 1.0


@dataclass(slots=True)
class SpotEvent:
    """One planned spot measurement, dose, or a miss of either, in simulated time."""

    sim_t: float
    device: int  # index into the worker's device list
    kind: str  # "measure" | "dose" | "measurement_missed" | "dose_missed"
    counter: int  # noise counter (day and slot)
    scheduled_t: float
    dose_id: str | None = None
    overrides: dict[int, float] = field(default_factory=dict)
    note: str | None = None

    def __lt__(self, other: SpotEvent) -> bool:
        return (self.sim_t, self.device, self.counter) < (other.sim_t, other.device, other.counter)


def day_events(
    seed: int,
    device_id: str,
    device_index: int,
    device_class: str,
    day: int,
    *,
    patient_id: str,
    dose_hours: tuple[float, ...] = (),
    adherence: float = 0.95,
    medication: str = "",
) -> list[SpotEvent]:
    """The spot measurements or doses of one device on simulated day `day` (epoch days).
    A dose carries the care plan's id of its medication (`medication`) as `dose_id`."""
    spec = DEVICE_SPECS[device_class]
    rng = np.random.default_rng([stable_key(seed, "day:" + device_id) & 0xFFFFFFFF, day])
    midnight = day * DAY
    events: list[SpotEvent] = []
    if device_class == "pill_bottle":
        for slot, hour in enumerate(dose_hours or (8.0,)):
            scheduled = midnight + hour * 3600.0
            dose_id = medication or f"{patient_id}:medication"
            taken = rng.random() < adherence
            delay = float(np.clip(rng.lognormal(np.log(12 * 60), 0.8), 30, DOSE_WINDOW_S - 60))
            counter = day * 16 + slot
            if taken:
                events.append(SpotEvent(scheduled + delay, device_index, "dose", counter, scheduled, dose_id))
            else:
                events.append(
                    SpotEvent(scheduled + DOSE_WINDOW_S, device_index, "dose_missed", counter, scheduled, dose_id)
                )
        return events
    for slot, hour in enumerate(spec.hours):
        jitter = float(np.clip(rng.normal(0.0, spec.jitter_h), -2 * spec.jitter_h, 2 * spec.jitter_h))
        skip_optional = spec.optional_last and slot == len(spec.hours) - 1 and rng.random() < 0.5
        taken = rng.random() < MEASURE_ADHERENCE
        if skip_optional:
            continue
        scheduled = midnight + hour * 3600.0
        counter = day * 16 + slot
        if taken:
            events.append(SpotEvent(scheduled + jitter * 3600.0, device_index, "measure", counter, scheduled))
        else:
            events.append(
                SpotEvent(scheduled + MEASUREMENT_WINDOW_S, device_index, "measurement_missed", counter, scheduled)
            )
    return events


def battery_level(device_class: str, sim_t: float, device_key: int) -> float:
    """Battery state of charge 0..1: a wearable is charged every night at 22:00 and drains
    during the day; spot devices drain slowly over months."""
    if device_class == "wearable":
        hours_since_charge = ((sim_t / 3600.0) - 22.0 - (device_key % 60) / 60.0) % 24.0
        return round(max(0.05, 1.0 - 0.033 * hours_since_charge), 2)
    days = (sim_t / DAY + (device_key % 97)) % 240.0
    return round(max(0.05, 0.98 - 0.0035 * days), 2)


def unit_for(device_class: str, metric: int, device_key: int) -> str | None:
    """The accepted non-canonical unit this device reports `metric` in, if any."""
    for alt_metric, unit, share in DEVICE_SPECS[device_class].alt_units:
        if alt_metric == metric and (device_key % 1000) / 1000.0 < share:
            return unit
    return None
