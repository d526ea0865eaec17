"""Device silence: a device of the patient has sent no data for too long.

reference/clinical.md ("Stale data"): warn after 15 min without data from a continuous
wearable, urgent after 30 min; for spot devices (cuff, scale, ...) use the care-plan schedule.
Per device class the care plan says which (`SilencePolicy`):
- `continuous`: the policy's `warn_s` / `urgent_s` (15 / 30 min for wearables by default);
- `schedule`: from the schedules of the metrics the device has sent: one expected reading
  missed (the longest gap between scheduled readings plus the tolerance) warns, two urgent.
  A spot device whose metrics have no schedule is never called silent: nothing is expected.

"Data" is the newest reading time the device sent (deterministic, unlike arrival time).
`observe_device` records it and clears the silence episodes of a device that speaks again;
`evaluate_silence(now)` raises `device_silent_warn` / `device_silent_urgent` once per silence,
dated at the moment the threshold was crossed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

import msgspec

from core.careplan import CarePlan
from core.catalogue import CATALOGUE
from core.detectors.episodes import EpisodeTracker
from core.detectors.model import Detection, Episode, as_utc, iso, new_readings
from core.detectors.rules.adherence import schedules_of
from core.rules import Rule, Severity
from core.wire import Reading

MAX_DEVICES: Final = 16
_SEVERITY: Final = {Rule.DEVICE_SILENT_WARN: Severity.LOW, Rule.DEVICE_SILENT_URGENT: Severity.HIGH}


class DeviceSeen(msgspec.Struct, frozen=True, kw_only=True):
    device_class: str
    last_seen: datetime
    metrics: tuple[str, ...] = ()
    open: tuple[Episode, ...] = ()  # the warn and/or urgent episode of the current silence


class SilenceState(msgspec.Struct, frozen=True, kw_only=True):
    devices: dict[str, DeviceSeen] = msgspec.field(default_factory=dict)


def observe_device(
    patient_id: str,
    state: SilenceState,
    device_id: str,
    device_class: str,
    readings: Sequence[Reading],
) -> tuple[SilenceState, list[Detection]]:
    """Note that a device sent these readings; clear its silence if it had been silent."""
    batch = new_readings(readings, frozenset(CATALOGUE), None)
    if not batch:
        return state, []
    newest = batch[-1].ts
    previous = state.devices.get(device_id)
    metrics = set(previous.metrics) if previous else set()
    metrics.update(r.metric for r in batch)
    out: list[Detection] = []
    if previous is not None and newest <= previous.last_seen:
        seen = msgspec.structs.replace(previous, device_class=device_class, metrics=tuple(sorted(metrics)))
    else:
        if previous is not None:
            evidence = {
                "device_id": device_id,
                "device_class": device_class,
                "silent_since": iso(previous.last_seen),
                "resumed_at": iso(newest),
                "silent_for_s": int((newest - previous.last_seen).total_seconds()),
            }
            EpisodeTracker(patient_id, out, previous.open).clear(at=newest, evidence=evidence)
        seen = DeviceSeen(device_class=device_class, last_seen=newest, metrics=tuple(sorted(metrics)))
    devices = {**state.devices, device_id: seen}
    if len(devices) > MAX_DEVICES:
        # Forget the longest-silent device; its open episodes stay with the alert service.
        oldest = min(devices, key=lambda d: devices[d].last_seen)
        del devices[oldest]
    return SilenceState(devices=devices), out


def forget_device(state: SilenceState, device_id: str) -> SilenceState:
    """Stop watching a device (unbound or revoked)."""
    return SilenceState(devices={k: v for k, v in state.devices.items() if k != device_id})


def silence_thresholds(plan: CarePlan, device: DeviceSeen) -> tuple[timedelta, timedelta] | None:
    """(warn, urgent) silence durations for a device, or None when it is not watched."""
    policy = plan.silence_policy(device.device_class)
    if policy.mode == "off":
        return None
    if policy.mode == "continuous":
        return timedelta(seconds=policy.warn_s), timedelta(seconds=policy.urgent_s)
    expected = [
        (s.expected_gap() + s.tolerance, 2 * s.expected_gap() + s.tolerance)
        for s in schedules_of(plan)
        if s.metric in device.metrics
    ]
    return min(expected) if expected else None


def evaluate_silence(
    patient_id: str, plan: CarePlan, state: SilenceState, now: datetime
) -> tuple[SilenceState, list[Detection]]:
    """Raise warn / urgent for devices silent past their thresholds at `now`."""
    now = as_utc(now)
    devices = dict(state.devices)
    out: list[Detection] = []
    for device_id, device in state.devices.items():
        thresholds = silence_thresholds(plan, device)
        if thresholds is None:
            continue
        warn, urgent = thresholds
        silent = now - device.last_seen
        episodes = EpisodeTracker(patient_id, out, device.open)
        if silent >= urgent and not episodes.has(Rule.DEVICE_SILENT_URGENT):
            rule, threshold = Rule.DEVICE_SILENT_URGENT, urgent
        elif silent >= warn and not episodes.is_open:
            rule, threshold = Rule.DEVICE_SILENT_WARN, warn
        else:
            continue
        episodes.raise_episode(
            rule,
            _SEVERITY[rule],
            at=device.last_seen + threshold,
            episode_start=device.last_seen,
            key_suffix=device_id,
            evidence={
                "device_id": device_id,
                "device_class": device.device_class,
                "last_seen": iso(device.last_seen),
                "silent_for_s": int(silent.total_seconds()),
                "warn_s": int(warn.total_seconds()),
                "urgent_s": int(urgent.total_seconds()),
                "metrics": list(device.metrics),
            },
        )
        devices[device_id] = msgspec.structs.replace(device, open=tuple(episodes.episodes.values()))
    out.sort(key=lambda d: d.detected_at)
    return SilenceState(devices=devices), out
