"""Personal baseline deviation: bucket means against their rolling median and MAD
(ARCHITECTURE.md §6; the settings are `core.careplan.BaselineSetting`).

Per patient and metric, readings are averaged over time buckets (`bucket_s`, aligned to the
epoch, 30 min by default). The baseline is the median of the last `window` bucket means and its
spread their median absolute deviation (MAD), computed with numpy. A bucket is judged when it
ends, i.e. at the patient's first reading of a later bucket: its mean deviates when the modified
z-score 0.6745 * (mean - median) / max(MAD, min_mad) exceeds the plan's threshold in either
direction (`min_mad` keeps a very steady series from turning every wiggle into an infinite
score). Nothing is judged before `min_samples` bucket means are known. `repeat_count`
consecutive deviating buckets raise `baseline_deviation` (one episode per metric; the metric is
part of the id), dated at the reading that ended the last of them; `clear_count` consecutive
ordinary buckets clear it. Every bucket joins the window, so a lasting change slowly becomes
the new baseline.

Why buckets and not single readings: a wearable reports every few seconds, so a window of the
last N readings covers minutes, and noise, posture or a meal looked like deviations (several
low-severity alerts per healthy patient-day in the simulator's end-to-end run). Means over 30
minutes against the last 24 hours of them compare the patient with their own day, circadian
rhythm included, and cost one addition per reading; the statistics run once per bucket.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec
import numpy as np

from core.careplan import BaselineSetting, CarePlan
from core.detectors.episodes import EpisodeTracker
from core.detectors.model import Detection, Episode, iso, latest_ts, new_readings
from core.rules import Rule, Severity
from core.wire import Reading

MAD_TO_Z: Final = 0.6745  # Iglewicz and Hoaglin's modified z-score constant
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class BaselineSeries(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    values: tuple[float, ...] = ()  # means of the last `window` ended buckets, oldest first
    last_ts: datetime | None = None
    bucket: int | None = None  # index of the open bucket (seconds since the epoch // bucket_s)
    total: float = 0.0  # sum and count of the open bucket's readings
    count: int = 0
    run: int = 0  # consecutive deviating buckets (no open episode)
    run_start: datetime | None = None
    calm: int = 0  # consecutive ordinary buckets (open episode)
    open: Episode | None = None


class BaselineState(msgspec.Struct, frozen=True, kw_only=True):
    series: dict[str, BaselineSeries] = msgspec.field(default_factory=dict)


def bucket_of(ts: datetime, bucket_s: int) -> int:
    return int((ts - _EPOCH).total_seconds() // bucket_s)


def median_mad(values: Sequence[float]) -> tuple[float, float]:
    """Median and median absolute deviation (numpy's median: the mean of the middle two)."""
    a = np.asarray(values, dtype=np.float64)
    median = float(np.median(a))
    return median, float(np.median(np.abs(a - median)))


class _Series:
    """The mutable working copy of one series while a batch runs through it."""

    def __init__(self, patient_id: str, setting: BaselineSetting, s: BaselineSeries) -> None:
        self.setting = setting
        self.values = list(s.values)
        self.bucket, self.total, self.count = s.bucket, s.total, s.count
        self.run, self.run_start, self.calm = s.run, s.run_start, s.calm
        self.found: list[Detection] = []
        self.episode = EpisodeTracker(patient_id, self.found, [s.open])

    def add(self, r: Reading) -> None:
        b = bucket_of(r.ts, self.setting.bucket_s)
        if self.bucket is not None and b != self.bucket and self.count:
            self._end_bucket(self.bucket, r.ts)
        if b != self.bucket:
            self.bucket, self.total, self.count = b, 0.0, 0
        self.total += r.value
        self.count += 1

    def _end_bucket(self, bucket: int, now: datetime) -> None:
        """Judge the bucket that just ended (`now` is the reading that ended it)."""
        s = self.setting
        mean = self.total / self.count
        start = _EPOCH + timedelta(seconds=bucket * s.bucket_s)
        history = self.values[-s.window :]
        if len(history) >= s.min_samples:
            median, mad = median_mad(history)
            z = MAD_TO_Z * (mean - median) / max(mad, s.min_mad)
            self._judge(abs(z) > s.z_threshold, now, start, mean, median, mad, z, len(history))
        self.values = [*history, mean][-s.window :]

    def _judge(
        self,
        deviating: bool,
        now: datetime,
        start: datetime,
        mean: float,
        median: float,
        mad: float,
        z: float,
        samples: int,
    ) -> None:
        s = self.setting
        if not self.episode.is_open:
            if not deviating:
                self.run, self.run_start = 0, None
                return
            self.run += 1
            self.run_start = self.run_start or start
            if self.run < s.repeat_count:
                return
        elif deviating:
            self.calm = 0
            return
        else:
            self.calm += 1
            if self.calm < s.clear_count:
                return
        evidence = {
            "metric": s.metric,
            "value": round(mean, 3),  # the bucket's mean
            "bucket": {"start": iso(start), "end": iso(start + timedelta(seconds=s.bucket_s)), "readings": self.count},
            "median": median,
            "mad": mad,
            "z": round(z, 3),
            "z_threshold": s.z_threshold,
            "direction": "above" if z > 0 else "below",
            "window": s.window,
            "samples": samples,
        }
        if not self.episode.is_open:
            self.episode.raise_episode(
                Rule.BASELINE_DEVIATION,
                Severity.LOW,
                at=now,
                episode_start=self.run_start or start,
                evidence=evidence,
                key_suffix=s.metric,
            )
            self.run, self.run_start, self.calm = 0, None, 0
        else:
            self.episode.clear(at=now, evidence=evidence)
            self.calm = 0

    def state(self, last_ts: datetime | None) -> BaselineSeries:
        return BaselineSeries(
            values=tuple(self.values),
            last_ts=last_ts,
            bucket=self.bucket,
            total=self.total,
            count=self.count,
            run=self.run,
            run_start=self.run_start,
            calm=self.calm,
            open=self.episode.episode,
        )


def detect_baseline(
    patient_id: str, plan: CarePlan, state: BaselineState, readings: Sequence[Reading]
) -> tuple[BaselineState, list[Detection]]:
    """Add each new reading to its bucket; judge every bucket that ended against the baseline."""
    series: dict[str, BaselineSeries] = {}
    out: list[Detection] = []
    for setting in plan.baselines:
        if not setting.enabled:
            continue
        previous = state.series.get(setting.metric, BaselineSeries())
        batch = new_readings(readings, setting.metric, previous.last_ts)
        if not batch:
            series[setting.metric] = previous
            continue
        work = _Series(patient_id, setting, previous)
        for r in batch:
            work.add(r)
        series[setting.metric] = work.state(latest_ts(batch, previous.last_ts))
        out.extend(work.found)
    out.sort(key=lambda d: d.detected_at)
    return BaselineState(series=series), out
