"""All detectors of one patient behind two calls, for the Faust agents to wrap.

- `detect_readings(patient_id, plan, state, readings, device_id=..., device_class=...)`: once
  per batch of one patient's readings (any order; sorted here). Runs out-of-range limits,
  NEWS2, BP crisis confirmation, heart-failure weight gain, glucose levels, personal baseline,
  notes schedule slots satisfied (and clears late-satisfied missed slots) and device contact.
- `observe_devices(patient_id, state, devices)`: the device-contact part alone, for a batch
  holding readings of several devices of the patient (run the detectors once over all the
  readings without a device, then note each device's contact).
- `detect_due(patient_id, plan, state, now)`: on a timer. Reports missed measurements and
  doses, and silent devices.

Both are pure: they return a new `DetectorState` and the detections, never mutate their
inputs and do no I/O. The state is a msgspec struct of bounded size (fixed per rule, windows
capped), meant to live in a Faust table as `dump_state()` bytes. Replaying a batch after its
state was saved yields no detection twice; replaying from an older state yields the same ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

import msgspec

from core.careplan import CarePlan
from core.detectors.model import Detection, IndexedReadings
from core.detectors.rules.adherence import AdherenceState, evaluate_adherence, observe_adherence
from core.detectors.rules.baseline import BaselineState, detect_baseline
from core.detectors.rules.bp import BpState, detect_bp_crisis
from core.detectors.rules.glucose import GlucoseState, detect_glucose
from core.detectors.rules.limits import LimitsState, detect_limits
from core.detectors.rules.news2_monitor import News2State, detect_news2
from core.detectors.rules.silence import SilenceState, evaluate_silence, observe_device
from core.detectors.rules.weight import WeightState, detect_weight_gain
from core.wire import Reading

STATE_SCHEMA: Final = 1


class DetectorState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the detectors remember about one patient."""

    schema: int = STATE_SCHEMA
    limits: LimitsState = LimitsState()
    news2: News2State = News2State()
    bp: BpState = BpState()
    weight: WeightState = WeightState()
    glucose: GlucoseState = GlucoseState()
    baseline: BaselineState = BaselineState()
    adherence: AdherenceState = AdherenceState()
    silence: SilenceState = SilenceState()


_state_decoder: Final = msgspec.json.Decoder(DetectorState)


def dump_state(state: DetectorState) -> bytes:
    return msgspec.json.encode(state)


def load_state(data: bytes | None) -> DetectorState:
    """Decode a saved state; None (no state yet) or an older schema starts afresh."""
    if data is None:
        return DetectorState()
    state = _state_decoder.decode(data)
    return state if state.schema == STATE_SCHEMA else DetectorState()


def detect_readings(
    patient_id: str,
    plan: CarePlan,
    state: DetectorState,
    readings: Sequence[Reading],
    *,
    device_id: str | None = None,
    device_class: str | None = None,
) -> tuple[DetectorState, list[Detection]]:
    """Run every reading-driven detector over one batch of a patient's readings."""
    batch = IndexedReadings(readings)  # checked, in UTC and sorted by time once for all detectors
    limits, d_limits = detect_limits(patient_id, plan, state.limits, batch)
    news2, d_news2 = detect_news2(patient_id, plan, state.news2, batch)
    bp, d_bp = detect_bp_crisis(patient_id, plan, state.bp, batch)
    weight, d_weight = detect_weight_gain(patient_id, plan, state.weight, batch)
    glucose, d_glucose = detect_glucose(patient_id, plan, state.glucose, batch)
    baseline, d_baseline = detect_baseline(patient_id, plan, state.baseline, batch)
    adherence, d_adherence = observe_adherence(patient_id, plan, state.adherence, batch)
    silence, d_silence = state.silence, list[Detection]()
    if device_id is not None and device_class is not None:
        silence, d_silence = observe_device(patient_id, state.silence, device_id, device_class, batch)
    new_state = DetectorState(
        limits=limits,
        news2=news2,
        bp=bp,
        weight=weight,
        glucose=glucose,
        baseline=baseline,
        adherence=adherence,
        silence=silence,
    )
    found = [*d_limits, *d_news2, *d_bp, *d_weight, *d_glucose, *d_baseline, *d_adherence, *d_silence]
    found.sort(key=lambda d: d.detected_at)  # stable: per-detector order kept within a time
    return new_state, found


def observe_devices(
    patient_id: str, state: DetectorState, devices: Sequence[tuple[str, str, Sequence[Reading]]]
) -> tuple[DetectorState, list[Detection]]:
    """Note contact from each (device_id, device_class, readings) and clear silences that ended."""
    silence = state.silence
    found: list[Detection] = []
    for device_id, device_class, readings in devices:
        silence, cleared = observe_device(patient_id, silence, device_id, device_class, readings)
        found.extend(cleared)
    if silence is state.silence:
        return state, found
    found.sort(key=lambda d: d.detected_at)
    return msgspec.structs.replace(state, silence=silence), found


def detect_due(
    patient_id: str, plan: CarePlan, state: DetectorState, now: datetime
) -> tuple[DetectorState, list[Detection]]:
    """Judge what the clock decides: missed measurements and doses, silent devices."""
    adherence, d_adherence = evaluate_adherence(patient_id, plan, state.adherence, now)
    silence, d_silence = evaluate_silence(patient_id, plan, state.silence, now)
    new_state = msgspec.structs.replace(state, adherence=adherence, silence=silence)
    found = sorted([*d_adherence, *d_silence], key=lambda d: d.detected_at)
    return new_state, found
