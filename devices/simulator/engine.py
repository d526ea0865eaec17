"""The generation engine of one worker: turns simulated time into device messages.

Wearables tick on a fixed wall-clock interval chosen so that the offered load equals
`--rate` readings/s (ticks of all wearables are spread evenly over the interval, so the
load is steady); spot devices, doses and scenario actions come from a time-ordered heap.
Every message is numbered, written to the outbox and the ground truth, and only after
the commit handed to its device's link for publishing, whether or not the device is
connected: a device that is offline (scenario) keeps its messages in the on-disk queue and
sends them, in seq order, when it is back. Each commit also checkpoints how far generation
got, so a killed simulator resumes exactly there (`resume`).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from core.catalogue import CATALOGUE
from core.clients.mqtt5 import mqtt_string
from core.wire import telemetry_topic
from devices.simulator.careplans import care_plan_for
from devices.simulator.config import Roster, RunOptions
from devices.simulator.device import Entry, Fleet, Link
from devices.simulator.expectations import GroundTruthKeeper
from devices.simulator.groundtruth import GroundTruth
from devices.simulator.messages import DeviceReading, convert, encode_message, fault_payload
from devices.simulator.outbox import Outbox
from devices.simulator.physiology import (
    GLUCOSE,
    INSULIN_END_H,
    METRICS,
    N_METRICS,
    Effects,
    FloatArray,
    Population,
    glucose_lowering,
    noise_keys,
    stable_key,
)
from devices.simulator.placement import place
from devices.simulator.scenarios import Action, Book, Context, DeviceInfo, ScenarioRequest
from devices.simulator.schedule import (
    DAY,
    DEVICE_SPECS,
    WEARABLE_METRICS,
    SimClock,
    SpotEvent,
    battery_level,
    day_events,
    iso,
    unit_for,
)

WEARABLE_READINGS: Final = len(WEARABLE_METRICS)
CHUNK: Final = 4096


@dataclass(slots=True)
class SimDevice:
    """Generation-side state of one device of this worker."""

    info: DeviceInfo
    patient_id: str
    key: int
    units: dict[int, str | None]
    next_seq: int = 1
    link: Link | None = None
    dead: bool = False
    offline: bool = False  # an offline scenario: generating, queueing, not connected


class Engine:
    """Generation for the devices of worker `worker` out of `workers`."""

    def __init__(self, opts: RunOptions, roster: Roster, worker: int = 0, workers: int = 1) -> None:
        self.opts, self.roster, self.worker, self.workers = opts, roster, worker, workers
        self.pop = Population(roster.patients, opts.seed)
        self.clock = SimClock(opts.start, opts.speed, opts.wall0)
        self.infos = [
            DeviceInfo(i, d.device_id, d.device_class, self.pop.index[d.patient_id])
            for i, d in enumerate(roster.devices)
        ]
        self.keys = [stable_key(opts.seed, "device:" + d.device_id) for d in roster.devices]
        wearables = [i.index for i in self.infos if DEVICE_SPECS[i.device_class].continuous]
        self.n_wearables = len(wearables)
        if opts.rate:
            self.interval = self.n_wearables * WEARABLE_READINGS / opts.rate if wearables else 0.0
        else:
            self.interval = opts.interval
        tick_sim = max(self.interval, 1.0) * opts.speed
        self.bottles = {i.patient: i.index for i in self.infos if i.device_class == "pill_bottle"}
        self._dose_cache: dict[tuple[int, int], list[float]] = {}
        classes: dict[int, set[str]] = {}
        for info in self.infos:
            classes.setdefault(info.patient, set()).add(info.device_class)
        self.patient_classes = classes
        self.plans = [
            care_plan_for(pid, self.pop.cohorts[i].name, bool(self.pop.on_oxygen[i]), classes.get(i, set()))
            for i, pid in enumerate(self.pop.ids)
        ]
        self.ctx = Context(
            self.pop,
            self.infos,
            seed=opts.seed,
            start=opts.start,
            tick_sim=tick_sim,
            spot_events=self.spot_events,
            spot_values=self.spot_values,
            recorded_values=self.recorded_values,
            plans=self.plans,
        )
        self.book: Book = place([ScenarioRequest.parse(s) for s in opts.scenarios], self.ctx)
        mine = {i for i, p in enumerate(roster.patients) if i % workers == worker}
        self.devices: dict[int, SimDevice] = {}
        for info, entry in zip(self.infos, roster.devices, strict=True):
            if info.patient in mine:
                key = self.keys[info.index]
                units = {m: unit_for(info.device_class, m, key) for m in DEVICE_SPECS[info.device_class].metrics}
                self.devices[info.index] = SimDevice(info, entry.patient_id, key, units)
        self.local_patients = sorted(mine)
        rank = {g: r for r, g in enumerate(wearables)}
        self.w_local = np.array([g for g in self.devices if g in rank], dtype=np.int64)
        self.w_frac = np.array([rank[g] / max(self.n_wearables, 1) for g in self.w_local])
        self.w_keys = np.array([self.keys[g] for g in self.w_local], dtype=np.uint64)
        self.w_patient = np.array([self.infos[g].patient for g in self.w_local], dtype=np.int64)
        self.w_next = 0
        self.heap: list[tuple[float, int, Any]] = []
        self._counter = itertools.count()
        self.planned_day = int(opts.start // DAY) - 1
        self.outbox: Outbox | None = None
        self.fleet: Fleet | None = None
        self.truth = GroundTruthKeeper(
            self.pop,
            self.plans,
            self.book,
            grace=self.ctx.grace,
            patient_classes=self.patient_classes,
            spot_events=self.spot_events,
        )
        self.new: list[tuple[SimDevice, Entry]] = []
        self.generated = self.generated_readings = 0
        self.upto = -1.0  # wall offset generated so far (checkpointed with every commit)
        self.generating_since: float | None = None  # monotonic time the clock started
        for action in self.book.actions():
            if action.device in self.devices and action.sim_t >= opts.start:
                self._push(action.sim_t, action)

    @property
    def gt(self) -> GroundTruth:
        """The ground-truth log this worker writes (set by the runner; none by default)."""
        return self.truth.gt

    @gt.setter
    def gt(self, value: GroundTruth) -> None:
        self.truth.gt = value

    # --- scenario context callbacks ---------------------------------------------------------
    def spot_events(self, device: int, t0: float, t1: float) -> list[SpotEvent]:
        """Planned spot events of any device in [t0, t1) (scenarios use it for expectations)."""
        info = self.infos[device]
        events: list[SpotEvent] = []
        for day in range(int(t0 // DAY), int(t1 // DAY) + 1):
            events += self._day(info, day)
        return sorted(e for e in events if t0 <= e.sim_t < t1)

    def _day(self, info: DeviceInfo, day: int) -> list[SpotEvent]:
        cohort = self.pop.cohorts[info.patient]
        events = day_events(
            self.opts.seed,
            info.device_id,
            info.index,
            info.device_class,
            day,
            patient_id=self.pop.ids[info.patient],
            dose_hours=cohort.dose_hours,
            adherence=float(self.pop.adherence[info.patient]),
            medication=cohort.medication,
        )
        return self.ctx.book.adjust_events(info.index, day, events)

    def spot_values(self, device: int, events: list[SpotEvent]) -> FloatArray:
        info = self.infos[device]
        t = np.array([e.sim_t for e in events])
        pidx = np.full(len(events), info.patient)
        effects = self.ctx.book.effects(pidx, t)
        if GLUCOSE in DEVICE_SPECS[info.device_class].metrics and self.pop.dose_drop[info.patient] > 0 and len(t):
            effects = self._with_doses(info.patient, t, effects)
        true = self.pop.true_state(pidx, t, effects)
        values = self.pop.measure(true, noise_keys(self.keys[device], [e.counter for e in events]))
        for row, e in enumerate(events):
            for metric, value in e.overrides.items():
                values[row, metric] = value
        return values

    def recorded_values(self, device: int, events: list[SpotEvent]) -> FloatArray:
        """Spot values as the platform stores them: in the device's unit, rounded as the
        device reports, then normalised to the canonical unit."""
        values = self.spot_values(device, events)
        key = self.keys[device]
        for m in DEVICE_SPECS[self.infos[device].device_class].metrics:
            unit = unit_for(self.infos[device].device_class, m, key)
            for row in range(len(events)):
                value, u = convert(m, float(values[row, m]), unit)
                canonical = CATALOGUE[METRICS[m]].normalise(value, u)
                values[row, m] = value if canonical is None else canonical
        return values

    def dose_times(self, patient: int, t0: float, t1: float) -> FloatArray:
        """When the patient took their doses (pill-bottle events, missed ones excluded) in [t0, t1]."""
        bottle = self.bottles.get(patient)
        if bottle is None:
            return np.zeros(0)
        times: list[float] = []
        for day in range(int(t0 // DAY), int(t1 // DAY) + 1):
            cached = self._dose_cache.get((patient, day))
            if cached is None:
                cached = [e.sim_t for e in self._day(self.infos[bottle], day) if e.kind == "dose"]
                self._dose_cache[(patient, day)] = cached
            times += [x for x in cached if t0 <= x <= t1]
        return np.array(times)

    def _with_doses(self, patient: int, t: FloatArray, effects: Effects | None) -> Effects:
        """Scenario effects plus the glucose lowering of the doses taken before each time."""
        doses = self.dose_times(patient, float(t.min()) - INSULIN_END_H * 3600.0, float(t.max()))
        add, weight, target = (
            effects
            if effects is not None
            else (np.zeros((len(t), N_METRICS)), np.zeros((len(t), N_METRICS)), np.zeros((len(t), N_METRICS)))
        )
        add = add.copy()
        add[:, GLUCOSE] -= glucose_lowering(float(self.pop.dose_drop[patient]), t, doses)
        return add, weight, target

    # --- records ------------------------------------------------------------------------------
    def write_header(self) -> None:
        self.truth.header(
            self.opts,
            worker=self.worker,
            workers=self.workers,
            interval=self.interval,
            devices=[(d.info, d.units) for d in self.devices.values()],
            wearables_total=self.n_wearables,
            local_patients=self.local_patients,
        )

    # --- generation -------------------------------------------------------------------------
    def _push(self, sim_t: float, item: Any) -> None:
        heapq.heappush(self.heap, (self.clock.offset_of(sim_t), next(self._counter), item))

    def _plan_days(self, off: float) -> None:
        last = int(self.clock.sim(off) // DAY) + 1
        while self.planned_day < last:
            self.planned_day += 1
            for dev in self.devices.values():
                if not DEVICE_SPECS[dev.info.device_class].continuous:
                    for event in self._day(dev.info, self.planned_day):
                        if event.sim_t >= self.opts.start:
                            self._push(event.sim_t, event)

    def resume(self, off: float) -> None:
        """Skip what a previous process generated and committed up to `off`: its spot events
        and one-off actions are not done again, but the device states they left (offline,
        battery dead) are restored."""
        self._plan_days(off)
        heap = self.heap
        while heap and heap[0][0] <= off:
            _at, _, item = heapq.heappop(heap)
            if isinstance(item, Action):
                dev = self.devices[item.device]
                if item.kind == "offline_start":
                    dev.offline = True
                elif item.kind == "offline_end":
                    dev.offline = False
                elif item.kind == "battery_dead":
                    dev.dead = True
        self.w_next = max(self.w_next, self._wearable_ticks_due(off))
        self.upto = off

    def _wearable_ticks_due(self, off: float) -> int:
        if len(self.w_local) == 0 or self.interval <= 0:
            return 0
        due = np.floor(off / self.interval - self.w_frac) + 1
        return int(np.clip(due, 0, None).sum())

    def generate_until(self, off: float) -> None:
        """Create every message due up to `off` wall seconds after the start."""
        self.upto = max(self.upto, off)
        self._plan_days(off)
        heap = self.heap
        while heap and heap[0][0] <= off:
            at, _, item = heapq.heappop(heap)
            self._wearables_until(at)
            if isinstance(item, Action):
                self._action(item)
            else:
                self._spot(item)
        self._wearables_until(off)

    def _wearables_until(self, off: float) -> None:
        n = len(self.w_local)
        if n == 0 or self.interval <= 0:
            return
        end = self._wearable_ticks_due(off)
        for start in range(self.w_next, end, CHUNK):
            j = np.arange(start, min(end, start + CHUNK))
            i, k = j % n, j // n
            t = self.clock.sim_array((k + self.w_frac[i]) * self.interval)
            pidx = self.w_patient[i]
            true = self.pop.true_state(pidx, t, self.book.effects(pidx, t))
            values = self.pop.measure(true, noise_keys(self.w_keys[i], k))
            self._emit_wearables(self.w_local[i], t, values)
        self.w_next = max(self.w_next, end)

    def _emit_wearables(self, devices: np.ndarray, t: FloatArray, values: FloatArray) -> None:
        scenario_devices = self.book.by_device
        for g, ts, row in zip(devices.tolist(), t.tolist(), values.tolist(), strict=True):
            dev = self.devices[g]
            if dev.dead:
                continue
            skew = 0.0
            if g in scenario_devices:
                if self.book.suppressed(g, ts):
                    continue
                skew = self.book.skew(g, ts)
            at = ts + skew
            readings = [DeviceReading(METRICS[m], *convert(m, row[m], dev.units.get(m)), at) for m in WEARABLE_METRICS]
            self.make_message(dev, readings, at, self._battery(dev, ts))

    def _battery(self, dev: SimDevice, sim_t: float) -> float:
        level = battery_level(dev.info.device_class, sim_t, dev.key)
        if dev.info.index in self.book.by_device:
            level = self.book.battery(dev.info.index, sim_t, level)
        return level

    def _spot(self, event: SpotEvent) -> None:
        dev = self.devices[event.device]
        g, pid = dev.info.index, dev.patient_id
        if event.kind in ("measurement_missed", "dose_missed"):
            self.truth.missed(dev.info, pid, event)
            return
        if dev.dead or self.book.suppressed(g, event.sim_t):
            return
        at = event.sim_t + self.book.skew(g, event.sim_t)
        if event.kind == "dose":
            readings = [DeviceReading("medication_taken", 1.0, "1", at, event.dose_id)]
        else:
            row = self.spot_values(g, [event])[0]
            readings = [
                DeviceReading(METRICS[m], *convert(m, float(row[m]), dev.units.get(m)), at)
                for m in DEVICE_SPECS[dev.info.device_class].metrics
            ]
            for r in readings:
                if r.metric == "glucose":
                    self.truth.glucose(dev.info, pid, r, event.sim_t)
        self.make_message(dev, readings, at, self._battery(dev, event.sim_t))

    def _action(self, action: Action) -> None:
        dev = self.devices[action.device]
        link, device_id = dev.link, dev.info.device_id
        self.gt.record(
            "device",
            action=action.kind,
            device_id=device_id,
            at=iso(action.sim_t),
            scenario=action.scenario.name,
            **action.params,
        )
        if action.kind == "offline_start":
            dev.offline = True
            if link is not None:
                link.go_offline()
        elif action.kind == "offline_end":
            # What was generated meanwhile is in the outbox and the link's queue: connecting
            # sends it in seq order.
            dev.offline = False
            if link is not None and not dev.dead:
                link.start()
        elif action.kind == "battery_dead":
            dev.dead = True
            if link is not None:
                link.go_offline()
        elif action.kind == "duplicate":
            entry = link.last_acked if link is not None else None
            sent = (
                entry is not None
                and link is not None
                and link.publish_oob(link.telemetry, entry.payload, ("duplicate", entry.seq))
            )
            self.gt.record("duplicate", device_id=device_id, seq=entry.seq if entry else None, sent=bool(sent))
        elif action.kind == "fault":
            self._fault(dev, action.params["fault"], action.sim_t)

    def _fault(self, dev: SimDevice, kind: str, sim_t: float) -> None:
        reading = DeviceReading("heart_rate", 72.0, "/min", sim_t)
        if kind in ("wrong_unit", "unknown_unit"):
            self.make_message(dev, [reading], sim_t, None, fault=kind)
            return
        link = dev.link
        topic = link.telemetry if link is not None else b""
        if kind == "foreign_topic":
            n = len(self.infos)
            other = self.infos[(dev.info.index + 1) % n]
            topic = mqtt_string(telemetry_topic(other.device_id))
        payload = fault_payload(kind, dev.info.device_id, dev.next_seq, sim_t, reading)
        sent = link is not None and link.publish_oob(topic, payload, ("fault", kind))
        self.gt.record(
            "fault",
            fault=kind,
            device_id=dev.info.device_id,
            topic=topic[2:].decode(),
            size=len(payload),
            at=iso(sim_t),
            sent=bool(sent),
        )

    def make_message(
        self,
        dev: SimDevice,
        readings: list[DeviceReading],
        sent_at: float,
        battery: float | None,
        fault: str | None = None,
    ) -> None:
        seq = dev.next_seq
        dev.next_seq += 1
        device_id = dev.info.device_id
        if fault is None:
            payload = encode_message(device_id, seq, sent_at, readings, battery)
        else:
            payload = fault_payload(fault, device_id, seq, sent_at, readings[0])
        if self.outbox is not None:
            self.outbox.add(device_id, seq, payload)
        self.gt.message(dev.patient_id, payload, fault)
        if fault is None and self.gt.enabled:
            self.truth.from_readings(dev.info, dev.patient_id, readings)
        self.new.append((dev, Entry(seq, payload, len(readings) + (1 if fault else 0))))
        self.generated += 1
        self.generated_readings += len(readings) + (1 if fault else 0)

    def flush(self) -> None:
        """Write the ground truth, commit the outbox with the checkpoint (the ground truth's
        size at this point), then hand new messages to the links."""
        self.gt.flush()
        if self.outbox is not None:
            self.outbox.progress(self.upto, self.gt.position())
            self.outbox.commit()
        for dev, entry in self.new:
            if dev.link is not None:
                dev.link.enqueue(entry)
        self.new.clear()
