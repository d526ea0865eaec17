"""Trend charts as server-rendered SVG: one polyline per metric over a time window, with the
care plan's raise and clear levels drawn as labelled lines (no JavaScript, no chart library)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Level:
    label: str
    value: float
    y: float
    kind: str  # "raise" or "clear"


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    points: str  # SVG polyline points
    levels: list[Level]
    y_min: float
    y_max: float
    top_label_y: float
    bottom_label_y: float
    last_x: float  # the latest reading, drawn as a dot (a single reading draws no line)
    last_y: float


WIDTH, HEIGHT, PAD = 360, 140, 10


def trend_chart(
    samples: list[tuple[datetime, float]], start: datetime, end: datetime, levels: list[tuple[str, float, str]]
) -> Chart | None:
    """The chart of the samples in [start, end), scaled to include every level; None without samples."""
    if not samples:
        return None
    values = [v for _, v in samples] + [v for _, v, _ in levels]
    low, high = min(values), max(values)
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    margin = (high - low) * 0.1
    low, high = low - margin, high + margin
    span = (end - start).total_seconds() or 1.0

    def x(ts: datetime) -> float:
        return PAD + (WIDTH - 2 * PAD) * max(0.0, min(1.0, (ts - start).total_seconds() / span))

    def y(value: float) -> float:
        return PAD + (HEIGHT - 2 * PAD) * (1 - (value - low) / (high - low))

    points = " ".join(f"{x(ts):.1f},{y(v):.1f}" for ts, v in samples)
    return Chart(
        WIDTH,
        HEIGHT,
        points,
        [Level(label, value, y(value), kind) for label, value, kind in levels],
        low,
        high,
        PAD + 4,
        HEIGHT - PAD,
        x(samples[-1][0]),
        y(samples[-1][1]),
    )
