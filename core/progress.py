"""Readiness from progress, not from a live process.

A component tells its `Progress` how much input it holds and when it finished some.
It is ready while it is up and either holds nothing or has finished something within the
last `stall_after_s` seconds (counted from when input started waiting, if that is later).
The verdict is computed when asked (a scrape, a probe), from a thread other than the
component's own event loop, so a loop that is stuck reads as not ready too.

Metrics (per component, no labels):
- `rpm_<component>_last_progress_timestamp_seconds`: Unix time of the last progress
- `rpm_<component>_input_waiting`: units of input held and not yet finished
- `rpm_<component>_ready`: 1 when ready as above, else 0
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class Progress(Collector):
    def __init__(self, component: str, stall_after_s: float, *, registry: CollectorRegistry | None = REGISTRY) -> None:
        self.component = component
        self.stall_after_s = stall_after_s
        self.up = False
        self._last_progress = time.time()
        self._waiting = 0
        self._waiting_since = self._last_progress
        if registry is not None:
            registry.register(self)

    def advanced(self) -> None:
        """Some input was finished (acknowledged, committed, judged)."""
        self._last_progress = time.time()

    def waiting(self, count: int) -> None:
        """How much input is held now and not finished."""
        if count > 0 and self._waiting <= 0:
            self._waiting_since = time.time()
        self._waiting = count

    @property
    def last_progress(self) -> float:
        return self._last_progress

    def verdict(self, now: float | None = None) -> tuple[bool, str]:
        """(ready, what a person should read)."""
        now = time.time() if now is None else now
        if not self.up:
            return False, "not connected"
        if self._waiting > 0:
            quiet = now - max(self._last_progress, self._waiting_since)
            if quiet > self.stall_after_s:
                return False, f"stalled: {self._waiting} waiting, no progress for {quiet:.0f} s"
            return True, f"working: {self._waiting} waiting"
        return True, "idle: nothing waiting"

    def collect(self) -> Iterable[Metric]:
        prefix = f"rpm_{self.component}"
        ready, _ = self.verdict()
        last = GaugeMetricFamily(
            f"{prefix}_last_progress_timestamp_seconds", f"Unix time the {self.component} last finished some input"
        )
        last.add_metric([], self._last_progress)
        waiting = GaugeMetricFamily(f"{prefix}_input_waiting", f"Input the {self.component} holds, not yet finished")
        waiting.add_metric([], float(max(self._waiting, 0)))
        flag = GaugeMetricFamily(
            f"{prefix}_ready", f"1 while the {self.component} is up and not stalled with input waiting"
        )
        flag.add_metric([], 1.0 if ready else 0.0)
        return [last, waiting, flag]


__all__ = ["Progress"]
