"""The ground truth's bookkeeping: what the engine writes about a run besides the messages
themselves (the header of run, patients and scenarios), and the detections a correct
platform owes what was generated: missed measurements and doses, glucose readings beyond
the limits, NEWS2 bands, and the rules of scenarios that watch the recorded readings.

The engine calls it as it generates; the log format itself is `groundtruth`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from core.careplan import CarePlan
from core.catalogue import CATALOGUE
from devices.simulator import clinical
from devices.simulator.careplans import scheduled_hours, scheduled_metric
from devices.simulator.config import RunOptions
from devices.simulator.groundtruth import GroundTruth
from devices.simulator.messages import DeviceReading
from devices.simulator.physiology import METRICS, Population
from devices.simulator.scenarios import Book, DeviceInfo, Expectation
from devices.simulator.schedule import DAY, DEVICE_SPECS, DOSE_WINDOW_S, MEASUREMENT_WINDOW_S, SpotEvent, iso

NEWS2_PARAMETERS = frozenset({"resp_rate", "spo2", "bp_systolic", "heart_rate", "body_temp"})


def expectation_json(exp: Expectation) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if exp.rule:
        out["rule"] = exp.rule
    if exp.outcome:
        out["outcome"] = exp.outcome
    if exp.absent:
        out["absent"] = True
    if exp.at is not None:
        out["at"] = iso(exp.at)
    if exp.by is not None:
        out["by"] = iso(exp.by)
    return {**out, **exp.detail}


class GroundTruthKeeper:
    """Writes a worker's header and expectation records to its ground truth (`gt`)."""

    def __init__(
        self,
        pop: Population,
        plans: list[CarePlan],
        book: Book,
        *,
        grace: float,
        patient_classes: dict[int, set[str]],
        spot_events: Callable[[int, float, float], list[SpotEvent]],
    ) -> None:
        self.pop, self.plans, self.book, self.grace = pop, plans, book, grace
        self.patient_classes = patient_classes
        self.spot_events = spot_events
        self.gt = GroundTruth(None)
        self.glucose_episodes: dict[int, clinical.GlucoseEpisodes] = {}
        self.news2: dict[int, clinical.News2Monitor] = {}

    # --- the header of a run --------------------------------------------------------------------
    def header(
        self,
        opts: RunOptions,
        *,
        worker: int,
        workers: int,
        interval: float,
        devices: list[tuple[DeviceInfo, dict[int, str | None]]],
        wearables_total: int,
        local_patients: list[int],
    ) -> None:
        """The `run` record, a `patient` record for each of this worker's patients (devices with
        their units, measurement hours, care plan) and a `scenario` record for each of theirs."""
        o = opts
        self.gt.record(
            "run",
            worker=worker,
            workers=workers,
            seed=o.seed,
            speed=o.speed,
            start=iso(o.start),
            wall_start=iso(o.wall0),
            rate=o.rate,
            interval_s=interval,
            devices=len(devices),
            wearables_total=wearables_total,
            scenarios=o.scenarios,
        )
        by_patient: dict[int, list[tuple[DeviceInfo, dict[int, str | None]]]] = {}
        for info, units in devices:
            by_patient.setdefault(info.patient, []).append((info, units))
        for p in local_patients:
            cohort = self.pop.cohorts[p]
            self.gt.record(
                "patient",
                patient_id=self.pop.ids[p],
                cohort=cohort.name,
                news2_scale=int(self.pop.news2_scale[p]),
                on_oxygen=bool(self.pop.on_oxygen[p]),
                dose_hours=list(cohort.dose_hours),
                devices=[
                    {
                        "device_id": info.device_id,
                        "device_class": info.device_class,
                        "units": {METRICS[m]: u for m, u in units.items() if u},
                    }
                    for info, units in by_patient.get(p, [])
                ],
                measurement_hours={
                    info.device_class: list(DEVICE_SPECS[info.device_class].hours)
                    for info, _ in by_patient.get(p, [])
                    if DEVICE_SPECS[info.device_class].hours
                },
                care_plan=msgspec.to_builtins(self.plans[p]),
            )
        for s in self.book.scenarios:
            if s.patient in local_patients:
                self.gt.record(
                    "scenario",
                    scenario=s.name,
                    patient_id=self.pop.ids[s.patient],
                    device_ids=[d.device_id for d in s.devices],
                    start=iso(s.start),
                    end=iso(s.end),
                    params=s.params,
                    **s.describe(),
                    expect=[expectation_json(e) for e in s.expectations],
                    **({"expect_from_readings": list(s.from_readings)} if s.from_readings else {}),
                )

    # --- what did not happen ----------------------------------------------------------------
    def missed(self, info: DeviceInfo, patient_id: str, event: SpotEvent) -> None:
        """The `event` record of a measurement or dose that did not happen, with the detection
        it is owed (none when a continuous device covers the metric or another reading of the
        device keeps the slot)."""
        rule = "measurement_missed" if event.kind == "measurement_missed" else "dose_missed"
        expect = [{"rule": rule, "at": iso(event.sim_t), "by": iso(event.sim_t + self.grace)}]
        note = None
        if (
            rule == "measurement_missed"
            and scheduled_metric(info.device_class, self.patient_classes[info.patient]) is None
        ):
            expect, note = [], "not in the care plan: a continuous device reports this metric"
        elif self._slot_kept(info, event):
            expect, note = [], "another reading of the device (a scenario's) falls in this slot's window"
        self.gt.record(
            "event",
            event=event.kind,
            device_id=info.device_id,
            patient_id=patient_id,
            scheduled=iso(event.scheduled_t),
            dose_id=event.dose_id,
            cause=event.note or "random",
            expect=expect,
            **({"note": note} if note else {}),
        )

    def _slot_kept(self, info: DeviceInfo, event: SpotEvent) -> bool:
        """Whether the platform counts another reading of the device for a slot whose own
        measurement or dose did not happen (e.g. a scenario's extra glucometer reading): one
        inside the slot's window (+/- the plan's tolerance) and nearer to it than to any other
        slot of the plan, at the time the payload states."""
        measure = event.kind == "measurement_missed"
        window = MEASUREMENT_WINDOW_S if measure else DOSE_WINDOW_S
        hours = scheduled_hours(info.device_class) if measure else (self.pop.cohorts[info.patient].dose_hours or (8.0,))
        day = int(event.scheduled_t // DAY)
        slots = [d * DAY + round(h * 60) * 60.0 for d in (day - 1, day, day + 1) for h in hours]
        g = info.index
        for e in self.spot_events(g, event.scheduled_t - window, event.scheduled_t + window + 1.0):
            if e.kind != ("measure" if measure else "dose") or self.book.suppressed(g, e.sim_t):
                continue
            at = e.sim_t + self.book.skew(g, e.sim_t)
            nearest = min(slots, key=lambda s: abs(s - at))
            if abs(at - event.scheduled_t) <= window and abs(nearest - event.scheduled_t) < 1.0:
                return True
        return False

    # --- what the readings imply ----------------------------------------------------------------
    def glucose(self, info: DeviceInfo, patient_id: str, reading: DeviceReading, sim_t: float) -> None:
        """Record the glucose detections this reading implies, as the platform will see it
        (normalised to mg/dL), unless a scenario already expects them."""
        mg_dl = CATALOGUE["glucose"].normalise(reading.value, reading.unit)
        if mg_dl is None:
            return
        patient = info.patient
        episodes = self.glucose_episodes.get(patient)
        if episodes is None:
            episodes = self.glucose_episodes[patient] = clinical.GlucoseEpisodes(self.plans[patient].glucose)
        for rule in episodes.observe(reading.ts, mg_dl):
            if any(
                e.rule == rule and e.at is not None and abs(e.at - sim_t) < 1.0
                for s in self.book.by_patient.get(patient, ())
                for e in s.expectations
            ):
                continue
            at = round(reading.ts * 1000.0) / 1000.0  # the reading's time as the payload states it
            self._record_expect(info, patient_id, rule, at, "glucose_reading", reading_mg_dl=round(mg_dl, 1))

    def from_readings(self, info: DeviceInfo, patient_id: str, readings: list[DeviceReading]) -> None:
        """Record the detections the readings imply as the platform receives them (canonical
        units, at the time the payload states): the NEWS2 bands under the patient's care plan
        (scale, oxygen), and what a scenario watching these readings expects of them. A
        detection inside such a scenario is recorded with the scenario's name as its cause."""
        values = {}
        for r in readings:
            if r.metric in NEWS2_PARAMETERS:
                canonical = CATALOGUE[r.metric].normalise(r.value, r.unit)
                if canonical is not None:
                    values[r.metric] = canonical
        if not values:
            return
        patient = info.patient
        at = round(readings[0].ts * 1000.0) / 1000.0
        watching = [s for s in self.book.by_patient.get(patient, ()) if s.from_readings and s.watching(at)]
        monitor = self._news2_monitor(patient)
        rule = monitor.observe(at, values)
        if rule is not None:
            cause = next((s.name for s in watching if rule in s.from_readings), "news2")
            self._record_expect(info, patient_id, rule, at, cause, news2=monitor.score(at)[0])
        for s in watching:
            for rule in s.observe(at, values):
                self._record_expect(info, patient_id, rule, at, s.name, values=values)

    def _news2_monitor(self, patient: int) -> clinical.News2Monitor:
        monitor = self.news2.get(patient)
        if monitor is None:
            monitor = self.news2[patient] = clinical.News2Monitor.for_plan(self.plans[patient])
        return monitor

    def _record_expect(
        self, info: DeviceInfo, patient_id: str, rule: str, at: float, cause: str, **detail: Any
    ) -> None:
        self.gt.record(
            "expect",
            rule=rule,
            patient_id=patient_id,
            device_id=info.device_id,
            at=iso(at),
            by=iso(at + self.grace),
            cause=cause,
            **detail,
        )
