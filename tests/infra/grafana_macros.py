"""Our own small expander of Grafana's PostgreSQL macros and dashboard variables, so a panel's
SQL can run against the real database the way Grafana would send it.

It follows Grafana's PostgreSQL datasource (pkg/tsdb/grafana-postgresql-datasource/macros.go)
with `timescaledb: true`: `$__timeFilter(col)` is `col BETWEEN 'from' AND 'to'`,
`$__timeGroup(col, interval)` is `time_bucket('<seconds>s', col)` and `$__timeGroupAlias`
adds `AS "time"`; `$__timeFrom()`/`$__timeTo()` are the range's quoted ends; `$__interval` the
panel's interval; a variable `$name` / `${name}` is its value, as typed (single-value
variables are not quoted by Grafana, so the SQL quotes them itself). A macro it does not know
fails, so a panel cannot use one the test did not expand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

_MACRO = re.compile(r"\$__(\w+)\(([^()]*)\)")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def interval_seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text.strip())
    if match is None:
        raise ValueError(f"not a Grafana interval: {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class Expansion:
    start: datetime
    end: datetime
    interval: str = "5m"
    variables: dict[str, str] = field(default_factory=dict)

    def _time(self, at: datetime) -> str:
        return "'" + at.strftime("%Y-%m-%dT%H:%M:%SZ") + "'"

    def _macro(self, match: re.Match[str]) -> str:
        name, args = match.group(1), [a.strip() for a in match.group(2).split(",")] if match.group(2) else []
        if name == "timeFilter":
            (col,) = args
            return f"{col} BETWEEN {self._time(self.start)} AND {self._time(self.end)}"
        if name in ("timeGroup", "timeGroupAlias"):
            col, every = args[0], args[1]
            seconds = interval_seconds(self.interval if every == "$__interval" else every)
            grouped = f"time_bucket('{seconds:g}s', {col})"
            return grouped + (' AS "time"' if name == "timeGroupAlias" else "")
        if name == "timeFrom" and not args:
            return self._time(self.start)
        if name == "timeTo" and not args:
            return self._time(self.end)
        raise ValueError(f"macro $__{name} is not expanded by this test")

    def _variable(self, match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name == "__interval":
            return self.interval
        if name == "__interval_ms":
            return str(int(interval_seconds(self.interval) * 1000))
        if name.startswith("__"):
            raise ValueError(f"${name} is not expanded by this test")
        if name not in self.variables:
            raise ValueError(f"dashboard variable ${name} has no value in this test")
        return self.variables[name]

    def expand(self, sql: str) -> str:
        return _VARIABLE.sub(self._variable, _MACRO.sub(self._macro, sql))
