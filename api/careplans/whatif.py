"""The what-if replay: stored readings through the stream worker's own detectors.

`core.detectors.service.detect_readings` is the function the worker's detection lane runs
per batch; here it runs over the stored readings in time order, in chunks of `CHUNK`
readings carrying the state from one chunk to the next as the worker does from one batch to
the next, once per plan. Only raise detections count (each opens or re-triggers an alert).
Timer-driven rules (missed measurements and doses, device silence: `detect_due`) are not
replayed. CPU-bound and pure: the endpoint runs it in a worker thread under a time limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from core.careplan import CarePlan
from core.detectors.model import DetectionKind
from core.detectors.service import DetectorState, detect_readings
from core.wire import Reading

CHUNK: Final = 500


@dataclass(slots=True)
class RuleCount:
    alerts: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None


@dataclass(slots=True)
class Replay:
    alerts: int = 0
    by_rule: dict[str, RuleCount] = field(default_factory=dict)


def replay(patient_id: str, plan: CarePlan, readings: Sequence[Reading], chunk: int = CHUNK) -> Replay:
    """Raise detections the plan gives over these readings (sorted by time), per rule."""
    state = DetectorState()
    out = Replay()
    for i in range(0, len(readings), chunk):
        state, found = detect_readings(patient_id, plan, state, readings[i : i + chunk])
        for d in found:
            if d.kind is not DetectionKind.RAISE:
                continue
            out.alerts += 1
            count = out.by_rule.setdefault(str(d.rule), RuleCount())
            count.alerts += 1
            if count.first_at is None:
                count.first_at = d.detected_at
            count.last_at = d.detected_at
    return out
