"""Personal baseline deviation: rolling median and MAD per patient and metric (ARCHITECTURE.md §6).

For every new reading, the baseline is the median of the (at most `window`) readings before it
and its spread the median absolute deviation (MAD). The reading deviates when its modified
z-score, 0.6745 * (x - median) / max(MAD, min_mad), exceeds the plan's threshold in either
direction; `min_mad` keeps a very steady series (MAD 0) from turning every wiggle into an
infinite score. Nothing fires before `min_samples` readings are known. `repeat_count`
consecutive deviating readings raise `baseline_deviation` (one episode per metric; the metric
is part of the id), `clear_count` consecutive ordinary readings clear it.

The rolling statistics of a batch are computed at once with numpy over a sliding-window view;
batches of a few readings and the short warm-up (fewer than `window` readings known) go row by
row in plain Python, where numpy's per-call overhead would dominate. All
readings join the window, so a lasting change slowly becomes the new baseline.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Sequence
from datetime import datetime
from typing import Final

import msgspec
import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from core.careplan import BaselineSetting, CarePlan
from core.rules import Rule, Severity
from core.wire import Reading
from streams.detection.model import (
    Detection,
    Episode,
    clear_detection,
    episode_of,
    iso,
    latest_ts,
    new_readings,
    raise_detection,
)

Floats = npt.NDArray[np.float64]

MAD_TO_Z: Final = 0.6745  # Iglewicz and Hoaglin's modified z-score constant
SMALL_BATCH: Final = 8


class BaselineSeries(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    values: tuple[float, ...] = ()  # the last `window` readings, oldest first
    last_ts: datetime | None = None
    run: int = 0  # consecutive deviating readings (no open episode)
    run_start: datetime | None = None
    calm: int = 0  # consecutive ordinary readings (open episode)
    open: Episode | None = None


class BaselineState(msgspec.Struct, frozen=True, kw_only=True):
    series: dict[str, BaselineSeries] = msgspec.field(default_factory=dict)


def _median(ordered: list[float]) -> float:
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _sorted_stats(s: list[float]) -> tuple[float, float]:
    """Median and MAD of an already sorted window, in plain Python with the same arithmetic as
    numpy's median.

    The absolute deviations |v - m| of a sorted window are two sorted runs, m - s[j] going left
    from the median and s[j] - m going right (m - v equals |v - m| exactly: IEEE subtraction
    rounds symmetrically), so their middle is found by merging the runs up to the middle rank
    instead of sorting all deviations.
    """
    n = len(s)
    mid = n // 2
    m = s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2
    left = bisect_left(s, m) - 1
    right = left + 1
    previous = current = 0.0
    for _ in range(mid + 1):
        if left >= 0 and (right >= n or m - s[left] <= s[right] - m):
            previous, current = current, m - s[left]
            left -= 1
        else:
            previous, current = current, s[right] - m
            right += 1
    return m, current if n % 2 else (previous + current) / 2


def _sliding_stats(values: list[float], spans: list[tuple[int, int]]) -> list[tuple[float, float]]:
    """Median and MAD of values[lo:hi] for each (lo, hi) span, spans moving forward: the sorted
    window is kept up to date by insertion and removal rather than sorted again per row."""
    out: list[tuple[float, float]] = []
    window: list[float] = []
    cur_lo = cur_hi = 0
    for lo, hi in spans:
        if not window or lo < cur_lo or hi < cur_hi or lo >= cur_hi:
            window = sorted(values[lo:hi])
        else:
            for x in values[cur_hi:hi]:
                insort(window, x)
            for x in values[cur_lo:lo]:
                del window[bisect_left(window, x)]
        cur_lo, cur_hi = lo, hi
        out.append(_sorted_stats(window))
    return out


def rolling_median_mad(history: Floats, new: Floats, window: int, min_samples: int) -> tuple[Floats, Floats]:
    """Median and MAD of the up to `window` values preceding each value of `new` (history
    first, then earlier values of `new`); NaN where fewer than `min_samples` precede it."""
    values = np.concatenate([history[-window:], new])
    n = len(new)
    first = len(values) - n
    positions = np.arange(first, first + n)
    counts = np.minimum(positions, window)
    median = np.full(n, np.nan)
    mad = np.full(n, np.nan)
    # numpy's per-call overhead outweighs its speed for a handful of rows (a typical
    # per-patient batch of a live stream); rows of a partial window are few too.
    vectorised = (positions >= window) if n > SMALL_BATCH else np.zeros(n, dtype=bool)
    if vectorised.any():
        # Row k holds values[k : k + window], the window just before values[k + window].
        rows = sliding_window_view(values[:-1], window)[positions[vectorised] - window]
        m = np.median(rows, axis=1)
        median[vectorised] = m
        mad[vectorised] = np.median(np.abs(rows - m[:, None]), axis=1)
    rows = np.flatnonzero(~vectorised & (counts >= min_samples)).tolist()
    if rows:
        as_list: list[float] = values.tolist()
        spans = [(int(positions[i] - counts[i]), int(positions[i])) for i in rows]
        for i, (m, d) in zip(rows, _sliding_stats(as_list, spans), strict=True):
            median[i], mad[i] = m, d
    return median, mad


_Stats = tuple[Sequence[float], Sequence[float], Sequence[bool], Sequence[float], Sequence[bool]]


def _statistics(setting: BaselineSetting, history: tuple[float, ...], new: list[float]) -> _Stats:
    """Per new value: median, MAD, whether they are known (min_samples), modified z-score and
    whether it deviates. Few values (a live stream's batch) go in plain Python, where numpy's
    per-call overhead would dominate; the arithmetic is the same either way."""
    window, min_samples = setting.window, setting.min_samples
    if len(new) > SMALL_BATCH:
        values = np.asarray(new, dtype=np.float64)
        median_a, mad_a = rolling_median_mad(
            np.asarray(history[-window:], dtype=np.float64), values, window, min_samples
        )
        known_a = ~np.isnan(median_a)
        z_a = np.zeros(len(new))
        z_a[known_a] = MAD_TO_Z * (values[known_a] - median_a[known_a]) / np.maximum(mad_a[known_a], setting.min_mad)
        deviating_a = known_a & (np.abs(z_a) > setting.z_threshold)
        return median_a.tolist(), mad_a.tolist(), known_a.tolist(), z_a.tolist(), deviating_a.tolist()
    recent = list(history[-window:])
    values_l = recent + new
    first = len(recent)
    rows = [i for i in range(len(new)) if min(first + i, window) >= min_samples]
    spans = [(first + i - min(first + i, window), first + i) for i in rows]
    stats = dict(zip(rows, _sliding_stats(values_l, spans), strict=True))
    median: list[float] = []
    mad: list[float] = []
    known: list[bool] = []
    z: list[float] = []
    deviating: list[bool] = []
    for i, x in enumerate(new):
        found = stats.get(i)
        if found is None:
            median.append(math.nan)
            mad.append(math.nan)
            known.append(False)
            z.append(0.0)
            deviating.append(False)
            continue
        m, d = found
        score = MAD_TO_Z * (x - m) / max(d, setting.min_mad)
        median.append(m)
        mad.append(d)
        known.append(True)
        z.append(score)
        deviating.append(abs(score) > setting.z_threshold)
    return median, mad, known, z, deviating


def _run_series(
    patient_id: str, setting: BaselineSetting, series: BaselineSeries, batch: list[Reading]
) -> tuple[BaselineSeries, list[Detection]]:
    new = [float(r.value) for r in batch]
    history = series.values[-setting.window :]
    median, mad, known, z, deviating = _statistics(setting, history, new)

    run, run_start, calm, open_ = series.run, series.run_start, series.calm, series.open
    out: list[Detection] = []
    for i, r in enumerate(batch):
        if open_ is None:
            if not deviating[i]:
                run, run_start = 0, None
                continue
            run += 1
            run_start = run_start or r.ts
            if run < setting.repeat_count:
                continue
        elif deviating[i]:
            calm = 0
            continue
        else:
            calm += 1
            if calm < setting.clear_count:
                continue
        evidence = {
            "metric": setting.metric,
            "value": r.value,
            "median": float(median[i]) if known[i] else None,
            "mad": float(mad[i]) if known[i] else None,
            "z": round(float(z[i]), 3),
            "z_threshold": setting.z_threshold,
            "direction": "above" if z[i] > 0 else "below",
            "window": setting.window,
            "samples": int(min(len(history) + i, setting.window)),
        }
        if open_ is None:
            det = raise_detection(
                patient_id,
                Rule.BASELINE_DEVIATION,
                Severity.LOW,
                at=r.ts,
                episode_start=run_start or r.ts,
                evidence=evidence,
                key_suffix=setting.metric,
            )
            open_, run, run_start, calm = episode_of(det), 0, None, 0
        else:
            evidence["ts"] = iso(r.ts)
            det = clear_detection(patient_id, open_, at=r.ts, evidence=evidence)
            open_, calm = None, 0
        out.append(det)
    return BaselineSeries(
        values=(*history, *new)[-setting.window :],
        last_ts=latest_ts(batch, series.last_ts),
        run=run,
        run_start=run_start,
        calm=calm,
        open=open_,
    ), out


def detect_baseline(
    patient_id: str, plan: CarePlan, state: BaselineState, readings: Sequence[Reading]
) -> tuple[BaselineState, list[Detection]]:
    """Compare each new reading with the patient's own recent readings of that metric."""
    series: dict[str, BaselineSeries] = {}
    out: list[Detection] = []
    for setting in plan.baselines:
        if not setting.enabled:
            continue
        previous = state.series.get(setting.metric, BaselineSeries())
        batch = new_readings(readings, setting.metric, previous.last_ts)
        if batch:
            series[setting.metric], found = _run_series(patient_id, setting, previous, batch)
            out.extend(found)
        else:
            series[setting.metric] = previous
    out.sort(key=lambda d: d.detected_at)
    return BaselineState(series=series), out
