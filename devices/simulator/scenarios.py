"""Scenarios placed on a patient's timeline, and the detections a correct platform owes them.

A scenario changes the physiology (sepsis-like deterioration, hypoxic episode,
heart-failure fluid retention, hypoglycaemia), the spot schedule (hypertensive reading and
its repeat, missed measurements, missed doses) or the device (offline then backfill, clock
skew, battery drain, duplicate resends, injected faults). Each one states its expected
detections (rule names from core.rules, earliest time and deadline in simulated time),
computed from the same deterministic model that produces the readings.

Syntax on the command line: ``NAME[:key=value,...]`` with keys ``patient`` (id or #index),
``patients`` (how many), ``start`` (offset from the simulation start, e.g. ``30m``),
``duration`` and scenario-specific ones (see `SCENARIO_HELP`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from core.careplan import CarePlan
from devices.simulator.physiology import N_METRICS, FloatArray, Population
from devices.simulator.schedule import SpotEvent

SCENARIO_HELP: Final[dict[str, str]] = {
    "sepsis": "deterioration to NEWS2 >= 7: ramp=6h plateau=2h recovery=2h",
    "hypoxia": "hypoxic episode: nadir=<SpO2 %> duration=20m",
    "hf_fluid": "heart-failure fluid retention: gain_kg=2 days=3 (needs a scale)",
    "hypertensive": "BP >= 180/120 and a repeat after repeat=5m: confirmed=true|false (needs a BP cuff)",
    "hypoglycaemia": "glucose dip: level=2|1 duration=70m, measured on the glucometer",
    "missed_measurements": "no measurements for duration=1d on device=<class> (default: first spot device)",
    "missed_doses": "pill bottle doses not taken for duration=1d",
    "offline": "device offline for duration=45m, then backfills (device=<class>, default wearable)",
    "clock_skew": "device clock off by offset=10m (may be negative) for duration=1h",
    "battery_drain": "battery empties within hours=2, then the device goes silent",
    "duplicates": "the device republishes already acknowledged messages: count=5 every=1m",
    "fault": "inject kind=nan|inf|wrong_unit|unknown_unit|oversize|foreign_topic|malformed_json count=1 every=1m",
}
FAULT_KINDS: Final = ("nan", "inf", "wrong_unit", "unknown_unit", "oversize", "foreign_topic", "malformed_json")
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class ScenarioError(ValueError):
    """A scenario request cannot be placed (unknown name, bad parameter, no fitting patient)."""


def parse_duration(text: str) -> float:
    """Seconds from '90', '90s', '30m', '6h', '3d' (negative allowed)."""
    match = _DURATION.match(text)
    if match is None:
        raise ScenarioError(f"not a duration: {text!r} (use e.g. 30s, 10m, 6h, 2d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True, slots=True)
class ScenarioRequest:
    name: str
    params: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> ScenarioRequest:
        name, _, rest = text.partition(":")
        name = name.strip().replace("-", "_")
        if name not in SCENARIO_HELP:
            raise ScenarioError(f"unknown scenario {name!r}; known: {', '.join(SCENARIO_HELP)}")
        params: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise ScenarioError(f"scenario {name}: expected key=value, got {item!r}")
            params[key.strip()] = value.strip()
        return cls(name, params)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    index: int  # position in the simulation's device list
    device_id: str
    device_class: str
    patient: int  # population index


@dataclass(slots=True)
class Expectation:
    """A detection a correct platform raises (or, when `absent`, must not raise)."""

    rule: str | None = None
    outcome: str | None = None
    at: float | None = None
    by: float | None = None
    absent: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Action:
    """A one-off device action at a simulated time (offline, death, duplicate, fault)."""

    sim_t: float
    device: int
    kind: str
    scenario: Scenario
    params: dict[str, Any] = field(default_factory=dict)

    def __lt__(self, other: Action) -> bool:
        return (self.sim_t, self.device) < (other.sim_t, other.device)


class Context:
    """What scenarios need to know about the simulation to place themselves."""

    def __init__(
        self,
        population: Population,
        devices: list[DeviceInfo],
        *,
        seed: int,
        start: float,
        tick_sim: float,
        spot_events: Callable[[int, float, float], list[SpotEvent]],
        spot_values: Callable[[int, list[SpotEvent]], FloatArray],
        recorded_values: Callable[[int, list[SpotEvent]], FloatArray] | None = None,
        plans: list[CarePlan] | None = None,
    ) -> None:
        self.population, self.devices, self.seed, self.start = population, devices, seed, start
        self.tick_sim = tick_sim
        self.spot_events, self.spot_values = spot_events, spot_values
        # Values as the platform receives them (device units, rounding, normalised back).
        self.recorded_values = recorded_values or spot_values
        # Each patient's care plan (what the platform judges them by).
        self.plans = plans if plans is not None else [CarePlan(patient_id=p) for p in population.ids]
        self.by_patient: dict[int, list[DeviceInfo]] = {}
        for d in devices:
            self.by_patient.setdefault(d.patient, []).append(d)
        self.book = Book()

    def true_state(self, patient: int, t: FloatArray) -> FloatArray:
        """Noise-free vitals of one patient with every placed scenario applied."""
        pidx = np.full(len(t), patient)
        return self.population.true_state(pidx, t, self.book.effects(pidx, t))

    @property
    def grace(self) -> float:
        """Allowance after the earliest possible detection: sampling plus processing."""
        return max(300.0, 3 * self.tick_sim)


class Scenario:
    """Base class: one scenario instance on one patient (and some of their devices)."""

    name: str = ""
    default_duration: float = 3600.0
    needs: tuple[str, ...] = ()  # device classes the patient must have

    def __init__(self, ctx: Context, patient: int, params: dict[str, str], ordinal: int) -> None:
        self.ctx, self.patient, self.params, self.ordinal = ctx, patient, params, ordinal
        self.start = ctx.start + parse_duration(params.get("start", "10m"))
        self.duration = parse_duration(params["duration"]) if "duration" in params else self.default_duration
        self.end = self.start + self.duration
        self.devices = [d for d in ctx.by_patient.get(patient, []) if self.uses(d)]
        self.expectations: list[Expectation] = []

    # Rules this scenario expects from the values its patient's devices record, judged as the
    # readings are generated (`observe`, or the engine's NEWS2 monitor for NEWS2 bands) and
    # written as `expect` records with the scenario's name as their cause: noise and a device's
    # cadence decide when a platform working on those readings raises, not the noise-free model.
    from_readings: tuple[str, ...] = ()
    watch_after: float = 0.0  # readings up to this long after `end` still belong to the scenario

    def watching(self, at: float) -> bool:
        return self.start <= at <= self.end + self.watch_after

    def uses(self, device: DeviceInfo) -> bool:
        return device.device_class in self.needs

    def num(self, key: str, default: float) -> float:
        try:
            return float(self.params.get(key, default))
        except ValueError as exc:
            raise ScenarioError(f"{self.name}: {key} must be a number") from exc

    def device_of(self, *classes: str) -> DeviceInfo:
        for wanted in classes:
            for d in self.ctx.by_patient.get(self.patient, []):
                if d.device_class == wanted:
                    return d
        raise ScenarioError(f"{self.name}: patient {self.ctx.population.ids[self.patient]} has no {classes}")

    # hooks, overridden where a scenario changes something ----------------------------------
    def effects(self, t: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray] | None:
        """(additive offsets, blend weights, blend targets), each (len(t), N_METRICS)."""
        return None

    def adjust_events(self, device: int, day: int, events: list[SpotEvent]) -> list[SpotEvent]:
        """Change one device's planned spot events of simulated day `day` (epoch days)."""
        return events

    def suppressed(self, device: int, sim_t: float) -> bool:
        """True when the device takes no measurement at sim_t (not worn, dead, offline)."""
        return False

    def skew(self, device: int, sim_t: float) -> float:
        return 0.0

    def battery(self, device: int, sim_t: float, level: float) -> float:
        return level

    def actions(self) -> list[Action]:
        return []

    def expect(self) -> None:
        """Fill `self.expectations` (called once every scenario is registered)."""

    def observe(self, at: float, values: dict[str, float]) -> list[str]:
        """The `from_readings` rules raised by the patient's readings taken at `at` (canonical
        units, in generation order), while `watching(at)`."""
        return []

    def describe(self) -> dict[str, Any]:
        return {}

    def window(self, t: FloatArray, ramp: float, hold: float, recover: float) -> FloatArray:
        """0 -> 1 over `ramp` (smoothstep), 1 for `hold`, back to 0 over `recover`."""
        x = t - self.start
        up = np.clip(x / max(ramp, 1e-9), 0.0, 1.0)
        down = np.clip((ramp + hold + recover - x) / max(recover, 1e-9), 0.0, 1.0)
        w = np.minimum(up, down)
        result: FloatArray = w * w * (3 - 2 * w)
        return result

    def _zeros(self, n: int) -> tuple[FloatArray, FloatArray, FloatArray]:
        return np.zeros((n, N_METRICS)), np.zeros((n, N_METRICS)), np.zeros((n, N_METRICS))


class Book:
    """All placed scenarios, indexed for the engine's per-tick questions."""

    def __init__(self) -> None:
        self.scenarios: list[Scenario] = []
        self.by_patient: dict[int, list[Scenario]] = {}
        self.by_device: dict[int, list[Scenario]] = {}

    def add(self, scenario: Scenario) -> None:
        self.scenarios.append(scenario)
        self.by_patient.setdefault(scenario.patient, []).append(scenario)
        for d in scenario.devices:
            self.by_device.setdefault(d.index, []).append(scenario)

    def effects(self, pidx: np.ndarray, t: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray] | None:
        if not self.by_patient:
            return None
        add = weight = target = None
        for patient, scenarios in self.by_patient.items():
            mask = pidx == patient
            if not mask.any():
                continue
            for s in scenarios:
                eff = s.effects(t[mask])
                if eff is None:
                    continue
                if add is None or weight is None or target is None:
                    add, weight, target = (np.zeros((len(t), N_METRICS)) for _ in range(3))
                add[mask] += eff[0]
                w = eff[1]
                weight[mask] = np.maximum(weight[mask], w)
                target[mask] = np.where(w > 0, eff[2], target[mask])
        return None if add is None or weight is None or target is None else (add, weight, target)

    def adjust_events(self, device: int, day: int, events: list[SpotEvent]) -> list[SpotEvent]:
        for s in self.by_device.get(device, ()):
            events = s.adjust_events(device, day, events)
        return events

    def suppressed(self, device: int, sim_t: float) -> bool:
        return any(s.suppressed(device, sim_t) for s in self.by_device.get(device, ()))

    def skew(self, device: int, sim_t: float) -> float:
        return sum(s.skew(device, sim_t) for s in self.by_device.get(device, ()))

    def battery(self, device: int, sim_t: float, level: float) -> float:
        for s in self.by_device.get(device, ()):
            level = s.battery(device, sim_t, level)
        return level

    def actions(self) -> list[Action]:
        return sorted(a for s in self.scenarios for a in s.actions())
