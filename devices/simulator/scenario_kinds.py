"""The scenario kinds: what each does to physiology, schedule or device, and the detections
it expects. Registered by name in `REGISTRY`; see `scenarios.SCENARIO_HELP`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.rules import Rule
from devices.simulator import clinical
from devices.simulator.careplans import scheduled_metric
from devices.simulator.physiology import (
    DBP,
    GLUCOSE,
    HR,
    METRICS,
    RR,
    SBP,
    SPO2,
    TEMP,
    WEIGHT,
    FloatArray,
    stable_key,
)
from devices.simulator.scenarios import (
    FAULT_KINDS,
    Action,
    Context,
    DeviceInfo,
    Expectation,
    Scenario,
    ScenarioError,
    parse_duration,
)
from devices.simulator.schedule import DAY, DEVICE_SPECS, DOSE_WINDOW_S, MEASUREMENT_WINDOW_S, SpotEvent

SPOT_CLASSES = ("bp_cuff", "scale", "glucometer", "pulse_oximeter", "thermometer")
Effects = tuple[FloatArray, FloatArray, FloatArray]


# The scenario kinds by name (placement looks them up here).
REGISTRY: dict[str, type[Scenario]] = {}


def register(cls: type[Scenario]) -> type[Scenario]:
    REGISTRY[cls.name] = cls
    return cls


def _named(values: dict[int, float]) -> dict[str, float]:
    return {METRICS[m]: v for m, v in values.items()}


def _expect(ctx: Context, rule: Rule, at: float | None, **detail: Any) -> Expectation:
    return Expectation(rule=rule.value, at=at, by=None if at is None else at + ctx.grace, detail=detail)


@register
class Sepsis(Scenario):
    name = "sepsis"
    needs = ("wearable",)
    from_readings = clinical.NEWS2_BANDS[1:]
    watch_after = clinical.NEWS2_STEP_DOWN_S

    def __init__(self, ctx: Context, patient: int, params: dict[str, str], ordinal: int) -> None:
        super().__init__(ctx, patient, params, ordinal)
        self.ramp = parse_duration(params.get("ramp", "6h"))
        self.plateau = parse_duration(params.get("plateau", "2h"))
        self.recovery = parse_duration(params.get("recovery", "2h"))
        self.end = self.start + self.ramp + self.plateau + self.recovery

    def effects(self, t: FloatArray) -> Effects:
        add, weight, target = self._zeros(len(t))
        w = self.window(t, self.ramp, self.plateau, self.recovery)
        add[:, TEMP] = 2.6 * w
        add[:, HR] = 22.0 * w
        add[:, RR] = 9.0 * w
        add[:, SPO2] = -6.0 * w
        add[:, SBP] = -38.0 * w
        add[:, DBP] = -20.0 * w
        return add, weight, target

    def expect(self) -> None:
        """The NEWS2 bands are expected from the recorded vitals (`from_readings`: the engine's
        NEWS2 monitor, the platform's rules on the values as the devices report them); the
        noise-free model gives only the peak the scenario aims at."""
        plan = self.ctx.plans[self.patient]
        t = np.arange(self.start, self.end, 60.0)
        x = self.ctx.true_state(self.patient, t)
        scale, oxygen = plan.news2.spo2_scale, plan.on_oxygen
        self.peak = max(
            clinical.news2(
                resp_rate=r[RR], spo2=r[SPO2], pulse=r[HR], temperature=r[TEMP], on_oxygen=oxygen, scale=scale
            )
            for r in x
        )

    def describe(self) -> dict[str, Any]:
        return {"ramp_s": self.ramp, "plateau_s": self.plateau, "recovery_s": self.recovery, "news2_peak": self.peak}


@register
class Hypoxia(Scenario):
    name = "hypoxia"
    needs = ("wearable",)
    default_duration = 1200.0
    RAMP, RECOVER = 180.0, 300.0
    from_readings = (Rule.SPO2_LOW.value,)
    watch_after = 1800.0

    def __init__(self, ctx: Context, patient: int, params: dict[str, str], ordinal: int) -> None:
        super().__init__(ctx, patient, params, ordinal)
        limit = next((x for x in ctx.plans[patient].limits if x.rule is Rule.SPO2_LOW and x.enabled), None)
        self.sustain = float(limit.sustained_s) if limit is not None else clinical.SPO2_LOW_SUSTAIN_S
        self.threshold = self.num("threshold", limit.raise_at if limit is not None else clinical.SPO2_LOW)
        self.nadir = self.num("nadir", self.threshold - 5.0)
        self.end = self.start + self.RAMP + self.duration + self.RECOVER
        self.tracker = clinical.LowLimitEpisode(
            raise_at=self.threshold,
            clear_at=limit.clear_at if limit is not None else self.threshold + 2.0,
            sustained_s=self.sustain,
            repeat=limit.repeat_count if limit is not None else 1,
            max_gap_s=limit.max_gap_s if limit is not None else 600.0,
        )

    def effects(self, t: FloatArray) -> Effects:
        add, weight, target = self._zeros(len(t))
        weight[:, SPO2] = self.window(t, self.RAMP, self.duration, self.RECOVER)
        target[:, SPO2] = self.nadir
        return add, weight, target

    def observe(self, at: float, values: dict[str, float]) -> list[str]:
        """SpO2-low from the recorded SpO2 values (the platform's limit rules), from the start."""
        spo2 = values.get("spo2")
        return [Rule.SPO2_LOW.value] if spo2 is not None and self.tracker.observe(at, spo2) else []

    def describe(self) -> dict[str, Any]:
        return {"nadir": self.nadir, "threshold": self.threshold}


@register
class HeartFailureFluid(Scenario):
    name = "hf_fluid"
    needs = ("scale",)

    def __init__(self, ctx: Context, patient: int, params: dict[str, str], ordinal: int) -> None:
        super().__init__(ctx, patient, params, ordinal)
        self.gain = self.num("gain_kg", 2.0)
        self.days = self.num("days", 3.0)
        if "duration" not in params:
            self.end = self.start + (self.days + 4) * DAY

    def effects(self, t: FloatArray) -> Effects:
        add, weight, target = self._zeros(len(t))
        inside = (t >= self.start) & (t < self.end)
        frac = np.clip((t - self.start) / (self.days * DAY), 0.0, 1.0) * inside
        add[:, WEIGHT] = self.gain * frac
        add[:, RR] = 1.5 * frac
        add[:, SPO2] = -1.0 * frac
        return add, weight, target

    def expect(self) -> None:
        """Judged on the recorded weights (as the platform receives them, from the run's start)
        against the patient's care plan: 1 day, optional 3 days, 7 days."""
        scale = self.device_of("scale")
        hf = self.ctx.plans[self.patient].hf_weight
        limits: dict[str, float | None] = {
            "gain_1d_kg": hf.gain_1d_kg,
            "gain_3d_kg": hf.gain_3d_kg,
            "gain_7d_kg": hf.gain_7d_kg,
        }
        windows = [(Rule.HF_WEIGHT_GAIN_1D.value, DAY, hf.gain_1d_kg)]
        if hf.gain_3d_kg is not None:
            windows.append((Rule.HF_WEIGHT_GAIN_3D.value, 3 * DAY, hf.gain_3d_kg))
        windows.append((Rule.HF_WEIGHT_GAIN_7D.value, 7 * DAY, hf.gain_7d_kg))
        since = max(self.ctx.start, self.start - 7 * DAY - hf.slack_s)
        events = [e for e in self.ctx.spot_events(scale.index, since, self.end) if e.kind == "measure"]
        if not events:
            return
        weights = [float(w) for w in self.ctx.recorded_values(scale.index, events)[:, WEIGHT]]
        times = [e.sim_t for e in events]
        self.max_gain_7d = max((w - min(weights[: j + 1]) for j, w in enumerate(weights)), default=0.0)
        if not hf.enabled:
            self.expectations.append(
                Expectation(
                    rule=Rule.HF_WEIGHT_GAIN_7D.value,
                    absent=True,
                    detail={**limits, "note": "weight-gain rules are off in this patient's care plan"},
                )
            )
            return
        raised = clinical.weight_gain_raises(times, weights, windows, hf.slack_s)
        for rule, _span, _limit in windows:
            at = raised.get(rule)
            if at is not None and at >= self.start:
                self.expectations.append(_expect(self.ctx, Rule(rule), at, **limits))
        if not any(e.rule for e in self.expectations):
            self.expectations.append(
                Expectation(
                    rule=Rule.HF_WEIGHT_GAIN_7D.value,
                    absent=True,
                    detail={
                        **limits,
                        "note": "recorded gain stays under the care plan's limits",
                        "max_gain_kg": round(self.max_gain_7d, 2),
                    },
                )
            )

    def describe(self) -> dict[str, Any]:
        return {"gain_kg": self.gain, "days": self.days}


@register
class Hypertensive(Scenario):
    name = "hypertensive"
    needs = ("bp_cuff",)

    def __init__(self, ctx: Context, patient: int, params: dict[str, str], ordinal: int) -> None:
        super().__init__(ctx, patient, params, ordinal)
        self.confirmed = params.get("confirmed", "true").lower() in ("1", "true", "yes")
        self.repeat_at = self.start + parse_duration(params.get("repeat", "5m"))
        self.end = self.repeat_at + 60.0
        rng = np.random.default_rng(stable_key(ctx.seed, f"hypertensive:{ordinal}:{patient}"))
        self.first = {SBP: float(rng.integers(186, 199)), DBP: float(rng.integers(121, 129))}
        if self.confirmed:
            self.second = {SBP: float(rng.integers(182, 193)), DBP: float(rng.integers(121, 127))}
        else:
            self.second = {SBP: float(rng.integers(150, 166)), DBP: float(rng.integers(88, 99))}

    def adjust_events(self, device: int, day: int, events: list[SpotEvent]) -> list[SpotEvent]:
        for n, (at, values) in enumerate(((self.start, self.first), (self.repeat_at, self.second))):
            if int(at // DAY) == day:
                events.append(SpotEvent(at, device, "measure", 10_000 + n, at, overrides=values, note="hypertensive"))
        return events

    def expect(self) -> None:
        first, second = _named(self.first), _named(self.second)
        self.expectations = [_expect(self.ctx, Rule.BP_CRISIS_UNCONFIRMED, self.start, reading=first)]
        if self.confirmed:
            self.expectations.append(_expect(self.ctx, Rule.BP_CRISIS_CONFIRMED, self.repeat_at, reading=second))
        else:
            self.expectations.append(
                Expectation(rule=Rule.BP_CRISIS_CONFIRMED.value, absent=True, detail={"repeat_reading": second})
            )

    def describe(self) -> dict[str, Any]:
        return {"confirmed": self.confirmed, "first": _named(self.first), "repeat": _named(self.second)}


@register
class Hypoglycaemia(Scenario):
    name = "hypoglycaemia"
    needs = ("glucometer",)
    default_duration = 70 * 60.0

    def __init__(self, ctx: Context, patient: int, params: dict[str, str], ordinal: int) -> None:
        super().__init__(ctx, patient, params, ordinal)
        self.level = int(self.num("level", 2))
        self.nadir = self.num("nadir", 46.0 if self.level == 2 else 62.0)
        self.ramp = min(1200.0, self.duration / 3)
        self.measured_at = self.start + self.ramp + (self.duration - 2 * self.ramp) / 2

    def effects(self, t: FloatArray) -> Effects:
        add, weight, target = self._zeros(len(t))
        w = self.window(t, self.ramp, self.duration - 2 * self.ramp, self.ramp)
        weight[:, GLUCOSE] = w
        target[:, GLUCOSE] = self.nadir
        add[:, HR] = 8.0 * w
        return add, weight, target

    def adjust_events(self, device: int, day: int, events: list[SpotEvent]) -> list[SpotEvent]:
        if int(self.measured_at // DAY) == day:
            events.append(
                SpotEvent(self.measured_at, device, "measure", 10_100, self.measured_at, note="hypoglycaemia")
            )
        return events

    def expect(self) -> None:
        meter = self.device_of("glucometer")
        event = SpotEvent(self.measured_at, meter.index, "measure", 10_100, self.measured_at)
        value = float(self.ctx.spot_values(meter.index, [event])[0, GLUCOSE])
        if value < clinical.GLUCOSE_LOW_L2:
            rule = Rule.GLUCOSE_LOW_L2
        elif value < clinical.GLUCOSE_LOW_L1:
            rule = Rule.GLUCOSE_LOW_L1
        else:
            raise ScenarioError(f"hypoglycaemia: nadir {self.nadir} gives a reading of {value} mg/dL")
        self.expectations = [_expect(self.ctx, rule, self.measured_at, reading_mg_dl=value)]


class _DeviceScenario(Scenario):
    """A scenario on one device of the patient (chosen by `device=<class>`)."""

    default_classes: tuple[str, ...] = ("wearable",)

    def __init__(self, ctx: Context, patient: int, params: dict[str, str], ordinal: int) -> None:
        self.target_classes = (params["device"],) if "device" in params else self.default_classes
        super().__init__(ctx, patient, params, ordinal)
        self.device = self.device_of(*self.target_classes)
        self.devices = [self.device]

    def uses(self, device: DeviceInfo) -> bool:
        return False

    @property
    def continuous(self) -> bool:
        return DEVICE_SPECS[self.device.device_class].continuous

    def silence_expectations(self, silent_from: float, silent_to: float) -> list[Expectation]:
        if not self.continuous:
            return []
        out = []
        for rule, after in (
            (Rule.DEVICE_SILENT_WARN, clinical.SILENT_WARN_S),
            (Rule.DEVICE_SILENT_URGENT, clinical.SILENT_URGENT_S),
        ):
            if silent_to - silent_from > after:
                out.append(_expect(self.ctx, rule, silent_from + after, device_id=self.device.device_id))
        return out

    def inside(self, sim_t: float) -> bool:
        return self.start <= sim_t < self.end


@register
class MissedMeasurements(_DeviceScenario):
    name = "missed_measurements"
    default_duration = DAY
    default_classes = (*SPOT_CLASSES, "wearable")

    def suppressed(self, device: int, sim_t: float) -> bool:
        return self.continuous and self.inside(sim_t)

    def adjust_events(self, device: int, day: int, events: list[SpotEvent]) -> list[SpotEvent]:
        for e in events:
            if e.kind == "measure" and self.inside(e.scheduled_t) and e.note is None:
                e.kind, e.sim_t, e.note = "measurement_missed", e.scheduled_t + MEASUREMENT_WINDOW_S, self.name
        return events

    def expect(self) -> None:
        if self.continuous:
            self.expectations = self.silence_expectations(self.start, self.end)
            return
        classes = {d.device_class for d in self.ctx.by_patient.get(self.patient, [])}
        if scheduled_metric(self.device.device_class, classes) is None:
            self.expectations = [
                Expectation(
                    rule=Rule.MEASUREMENT_MISSED.value,
                    absent=True,
                    detail={
                        "device_id": self.device.device_id,
                        "note": "not in the care plan: a continuous device of the patient reports this metric",
                    },
                )
            ]
            return
        for e in self.ctx.spot_events(self.device.index, self.start, self.end + MEASUREMENT_WINDOW_S):
            if e.kind == "measurement_missed" and self.inside(e.scheduled_t):
                self.expectations.append(
                    _expect(
                        self.ctx,
                        Rule.MEASUREMENT_MISSED,
                        e.sim_t,
                        device_id=self.device.device_id,
                        scheduled_at=e.scheduled_t,
                    )
                )


@register
class MissedDoses(_DeviceScenario):
    name = "missed_doses"
    needs = ("pill_bottle",)
    default_duration = DAY
    default_classes = ("pill_bottle",)

    def adjust_events(self, device: int, day: int, events: list[SpotEvent]) -> list[SpotEvent]:
        for e in events:
            if e.kind == "dose" and self.inside(e.scheduled_t):
                e.kind, e.sim_t, e.note = "dose_missed", e.scheduled_t + DOSE_WINDOW_S, self.name
        return events

    def expect(self) -> None:
        for e in self.ctx.spot_events(self.device.index, self.start, self.end + DOSE_WINDOW_S):
            if e.kind == "dose_missed" and self.inside(e.scheduled_t):
                self.expectations.append(
                    _expect(self.ctx, Rule.DOSE_MISSED, e.sim_t, dose_id=e.dose_id, scheduled_at=e.scheduled_t)
                )


@register
class Offline(_DeviceScenario):
    name = "offline"
    default_duration = 45 * 60.0

    # Measurements go on while offline: they wait in the device's on-disk queue.
    def actions(self) -> list[Action]:
        return [
            Action(self.start, self.device.index, "offline_start", self),
            Action(self.end, self.device.index, "offline_end", self),
        ]

    def expect(self) -> None:
        self.expectations = self.silence_expectations(self.start, self.end)
        self.expectations.append(
            Expectation(
                outcome="backfilled",
                at=self.end,
                by=self.end + self.ctx.grace,
                detail={"device_id": self.device.device_id},
            )
        )


@register
class ClockSkew(_DeviceScenario):
    name = "clock_skew"

    def __init__(self, ctx: Context, patient: int, params: dict[str, str], ordinal: int) -> None:
        super().__init__(ctx, patient, params, ordinal)
        self.offset = parse_duration(params.get("offset", "10m"))

    def skew(self, device: int, sim_t: float) -> float:
        return self.offset if self.inside(sim_t) else 0.0

    def expect(self) -> None:
        if self.offset > clinical.FUTURE_TOLERANCE_S:
            outcome = Expectation(outcome="rejected", detail={"reason": "future_timestamp"})
        else:
            outcome = Expectation(outcome="accepted", detail={"note": "timestamps shifted by the skew"})
        outcome.at, outcome.by = self.start, self.end
        self.expectations = [outcome]

    def describe(self) -> dict[str, Any]:
        return {"offset_s": self.offset}


@register
class BatteryDrain(_DeviceScenario):
    name = "battery_drain"

    def __init__(self, ctx: Context, patient: int, params: dict[str, str], ordinal: int) -> None:
        super().__init__(ctx, patient, params, ordinal)
        self.hours = self.num("hours", 2.0)
        self.death = self.start + self.hours * 3600.0
        self.end = self.death

    def battery(self, device: int, sim_t: float, level: float) -> float:
        if sim_t < self.start:
            return level
        return round(max(0.0, level * (1.0 - (sim_t - self.start) / (self.hours * 3600.0))), 2)

    def suppressed(self, device: int, sim_t: float) -> bool:
        return sim_t >= self.death

    def actions(self) -> list[Action]:
        return [Action(self.death, self.device.index, "battery_dead", self)]

    def expect(self) -> None:
        self.expectations = self.silence_expectations(self.death, self.death + 7 * DAY)

    def describe(self) -> dict[str, Any]:
        return {"hours_to_empty": self.hours}


@register
class Duplicates(_DeviceScenario):
    name = "duplicates"

    def actions(self) -> list[Action]:
        every = parse_duration(self.params.get("every", "1m"))
        count = int(self.num("count", 5))
        return [Action(self.start + i * every, self.device.index, "duplicate", self) for i in range(count)]

    def expect(self) -> None:
        self.expectations = [Expectation(outcome="deduplicated", detail={"device_id": self.device.device_id})]


@register
class Fault(_DeviceScenario):
    name = "fault"

    def __init__(self, ctx: Context, patient: int, params: dict[str, str], ordinal: int) -> None:
        super().__init__(ctx, patient, params, ordinal)
        self.kind = params.get("kind", "malformed_json")
        if self.kind not in FAULT_KINDS:
            raise ScenarioError(f"fault: unknown kind {self.kind!r}; known: {', '.join(FAULT_KINDS)}")
        if self.kind == "foreign_topic" and len(ctx.devices) < 2:
            raise ScenarioError("fault: foreign_topic needs at least two devices")

    def actions(self) -> list[Action]:
        every = parse_duration(self.params.get("every", "1m"))
        count = int(self.num("count", 1))
        return [
            Action(self.start + i * every, self.device.index, "fault", self, {"fault": self.kind}) for i in range(count)
        ]

    def expect(self) -> None:
        reasons = {
            "nan": "invalid_json",
            "inf": "not_finite",
            "wrong_unit": "implausible",
            "unknown_unit": "unknown_unit",
            "malformed_json": "invalid_json",
        }
        if self.kind in ("oversize", "foreign_topic"):
            exp = Expectation(outcome="refused_by_broker", detail={"puback_reason": ">= 0x80"})
        else:
            exp = Expectation(outcome="rejected", detail={"reason": reasons[self.kind]})
        self.expectations = [exp]

    def describe(self) -> dict[str, Any]:
        return {"fault": self.kind}
