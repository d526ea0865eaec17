"""Readings and plans for the detector tests: a fixed clock and terse constructors."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from core.detectors.model import Detection, DetectionKind
from core.rules import Rule
from core.wire import Reading

# A Monday, 06:00 UTC.
T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)


def at(minutes: float = 0.0) -> datetime:
    return T0 + timedelta(minutes=minutes)


def reading(metric: str, value: float, minutes: float, dose_id: str | None = None) -> Reading:
    return Reading(metric, value, at(minutes), dose_id)


def series(metric: str, values: Iterable[float], *, start: float = 0.0, step: float = 1.0) -> list[Reading]:
    """One reading per `step` minutes from `start`."""
    return [reading(metric, v, start + i * step) for i, v in enumerate(values)]


def events(detections: Sequence[Detection]) -> list[tuple[Rule, DetectionKind]]:
    return [(d.rule, d.kind) for d in detections]


def raised(detections: Sequence[Detection], rule: Rule | None = None) -> list[Detection]:
    return [d for d in detections if d.kind is DetectionKind.RAISE and (rule is None or d.rule is rule)]


def cleared(detections: Sequence[Detection], rule: Rule | None = None) -> list[Detection]:
    return [d for d in detections if d.kind is DetectionKind.CLEAR and (rule is None or d.rule is rule)]
