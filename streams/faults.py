"""Injected faults, for tests of the worker's supervision (development and test only).

`RPM_STREAMS_FAULT_INJECT=<point>` makes the named part of the worker raise `InjectedFaultError`
the first time it runs, outside every per-record barrier, as a bug would: the process must
then end with exit code 70 and a critical log line naming the part. The settings refuse the
variable when `RPM_ENVIRONMENT=production`, so a production worker cannot be made to crash
by its environment. Points:

- `lane-store`, `lane-detect`: a lane task, when it is handed its first batch;
- `agent-readings`: the readings agent, when it takes its first batch;
- `agent-care-plans`: the care-plan agent, at its first record;
- `timer-detect-due`, `timer-report-up`: a timer, at its first pass.
"""

from __future__ import annotations

from typing import Final

POINTS: Final = (
    "lane-store",
    "lane-detect",
    "agent-readings",
    "agent-care-plans",
    "timer-detect-due",
    "timer-report-up",
)


class InjectedFaultError(RuntimeError):
    """Raised at the fault point named by RPM_STREAMS_FAULT_INJECT."""


class Faults:
    def __init__(self, point: str = "") -> None:
        if point and point not in POINTS:
            raise ValueError(f"unknown fault point {point!r}; one of {', '.join(POINTS)}")
        self.point = point

    def check(self, point: str) -> None:
        if self.point and point == self.point:
            raise InjectedFaultError(f"fault injected at {point} (RPM_STREAMS_FAULT_INJECT)")


__all__ = ["POINTS", "Faults", "InjectedFaultError"]
