"""What the detectors report, and the small helpers they share.

A `Detection` is one finding about one patient: a rule raising (`kind="raise"`) or an
episode of a rule with hysteresis ending (`kind="clear"`). Its `detection_id` is a UUID v5 of
(patient, rule, kind, episode key), where the episode key is built from the triggering
reading's timestamp (or the schedule slot / device for timer-based rules). Replaying the same
readings therefore yields the same ids, which lets the alert service drop duplicates.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

import msgspec

from core.rules import Rule, Severity
from core.wire import Reading

DETECTION_SCHEMA: Final = 1
# Fixed forever: changing it would change every detection id.
DETECTION_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "urn:rpm:detection:v1")


class DetectionKind(StrEnum):
    RAISE = "raise"
    CLEAR = "clear"


class Detection(msgspec.Struct, frozen=True, kw_only=True):
    """One finding, as published on `rpm.detections.v1` (key: patient_id)."""

    detection_id: str
    patient_id: str
    rule: Rule
    severity: Severity
    kind: DetectionKind
    # The time of the reading that triggered it (timer-based rules: the moment the window
    # closed or the silence crossed its threshold). Timezone-aware UTC.
    detected_at: datetime
    # Start of the episode this detection belongs to.
    episode_start: datetime
    evidence: dict[str, Any]
    # For kind="clear": the detection_id of the raise it ends.
    clears: str | None = None
    schema: int = DETECTION_SCHEMA


class Episode(msgspec.Struct, frozen=True):
    """An open (raised, not yet cleared) episode, kept in detector state so a clear can
    name the raise it ends."""

    rule: Rule
    detection_id: str
    started_at: datetime


def as_utc(ts: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is refused (CONVENTIONS.md: aware UTC only)."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"naive datetime {ts.isoformat()} where timezone-aware UTC is required")
    return ts.astimezone(UTC)


def iso(ts: datetime) -> str:
    """Canonical text of an instant (UTC, microseconds) for ids and evidence."""
    return as_utc(ts).isoformat(timespec="microseconds")


def detection_id(patient_id: str, rule: Rule, kind: DetectionKind, key: str) -> str:
    """Deterministic id of a detection: the same inputs always give the same UUID."""
    return str(uuid.uuid5(DETECTION_NAMESPACE, f"{patient_id}|{rule.value}|{kind.value}|{key}"))


def raise_detection(
    patient_id: str,
    rule: Rule,
    severity: Severity,
    *,
    at: datetime,
    episode_start: datetime,
    evidence: dict[str, Any],
    key_suffix: str = "",
) -> Detection:
    """A raise whose id derives from the episode start (plus an optional qualifier such as a
    metric, device or schedule slot)."""
    key = iso(episode_start) + (f"|{key_suffix}" if key_suffix else "")
    return Detection(
        detection_id=detection_id(patient_id, rule, DetectionKind.RAISE, key),
        patient_id=patient_id,
        rule=rule,
        severity=severity,
        kind=DetectionKind.RAISE,
        detected_at=as_utc(at),
        episode_start=as_utc(episode_start),
        evidence=evidence,
    )


def clear_detection(patient_id: str, episode: Episode, *, at: datetime, evidence: dict[str, Any]) -> Detection:
    """The end of an episode; its id derives from the raise it clears."""
    return Detection(
        detection_id=detection_id(patient_id, episode.rule, DetectionKind.CLEAR, episode.detection_id),
        patient_id=patient_id,
        rule=episode.rule,
        severity=Severity.INFO,
        kind=DetectionKind.CLEAR,
        detected_at=as_utc(at),
        episode_start=as_utc(episode.started_at),
        evidence=evidence,
        clears=episode.detection_id,
    )


def episode_of(detection: Detection) -> Episode:
    return Episode(detection.rule, detection.detection_id, detection.episode_start)


def _utc_reading(r: Reading) -> Reading:
    if not math.isfinite(r.value):
        # Ingest rejects these; one here is a bug upstream, not something to score.
        raise ValueError(f"non-finite {r.metric} value at {r.ts.isoformat()}")
    if r.ts.tzinfo is UTC:
        return r
    return Reading(r.metric, r.value, as_utc(r.ts), r.dose_id)


class IndexedReadings(list[Reading]):
    """A batch of readings checked once (finite, UTC) and sorted by time, with the readings of
    each metric at hand: `detect_readings` builds one so that its detectors do not each scan
    and convert the whole batch. Any detector still accepts a plain sequence."""

    __slots__ = ("_by_metric",)

    def __init__(self, readings: Iterable[Reading]) -> None:
        super().__init__(_utc_reading(r) for r in readings)
        self.sort(key=_ts_of)
        self._by_metric: dict[str, list[Reading]] = {}
        for r in self:
            found = self._by_metric.get(r.metric)
            if found is None:
                self._by_metric[r.metric] = [r]
            else:
                found.append(r)

    def of(self, metrics: frozenset[str]) -> list[Reading]:
        """The readings of these metrics, sorted by time (a new list)."""
        groups = [g for m in metrics if (g := self._by_metric.get(m)) is not None]
        if len(groups) == 1:
            return list(groups[0])
        picked = [r for g in groups for r in g]
        picked.sort(key=_ts_of)
        return picked


def _ts_of(r: Reading) -> datetime:
    return r.ts


def new_readings(readings: Iterable[Reading], metrics: str | frozenset[str], after: datetime | None) -> list[Reading]:
    """The readings of the given metric(s) newer than `after`, sorted by time.

    Stateful detectors keep the time of the last reading they processed; anything at or
    before it has been seen (a replay) or arrived too late to re-run the state machine,
    so it is skipped. The observations themselves are stored regardless. Timestamps come
    back in UTC; a naive one is refused.
    """
    wanted = frozenset({metrics}) if isinstance(metrics, str) else metrics
    if isinstance(readings, IndexedReadings):
        picked = readings.of(wanted)
    else:
        picked = [_utc_reading(r) for r in readings if r.metric in wanted]
        picked.sort(key=_ts_of)
    if after is not None:
        picked = [r for r in picked if r.ts > after]
    return picked


def latest_ts(readings: Sequence[Reading], previous: datetime | None) -> datetime | None:
    """The newer of `previous` and the last reading's time (readings sorted)."""
    if not readings:
        return previous
    last = as_utc(readings[-1].ts)
    return last if previous is None or last > previous else previous


decode_detection: Final = msgspec.json.Decoder(Detection).decode
