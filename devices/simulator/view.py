"""The live view (rich) and the end-of-run summary of a simulation."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

Row = tuple[str, str, Callable[[dict[str, Any]], str]]
ROWS: tuple[Row, ...] = (
    ("devices", "devices connected", lambda s: f"{s.get('connected', 0):,} / {s.get('devices', 0):,}"),
    ("generated", "messages generated", lambda s: f"{s.get('generated', 0):,}"),
    ("readings", "readings generated", lambda s: f"{s.get('generated_readings', 0):,}"),
    ("published", "published (resends incl.)", lambda s: f"{s.get('published', 0):,}"),
    ("acked", "acknowledged", lambda s: f"{s.get('acked', 0):,}"),
    ("queued", "queued (not yet acknowledged)", lambda s: f"{s.get('queued', 0):,}"),
    ("failed", "refused by the broker", lambda s: f"{s.get('failed', 0):,}"),
    ("resent", "resent", lambda s: f"{s.get('resent', 0):,}"),
    ("lost", "connections lost", lambda s: f"{s.get('lost_connections', 0):,}"),
    ("refused", "logins refused", lambda s: f"{s.get('refused_logins', 0):,}"),
)


def _sim_time(stats: dict[str, Any]) -> str:
    t = stats.get("sim_time")
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


class LiveView:
    """A table refreshed from the latest stats; rates from the last two updates."""

    def __init__(self, console: Console, enabled: bool = True) -> None:
        self.console, self.enabled = console, enabled
        self._live: Live | None = None
        self._last: tuple[float, dict[str, Any]] | None = None
        self._rates = (0.0, 0.0)

    def __enter__(self) -> LiveView:
        if self.enabled:
            self._live = Live(self._table({}), console=self.console, refresh_per_second=4, transient=False)
            self._live.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def update(self, stats: dict[str, Any]) -> None:
        now = time.monotonic()
        if self._last is not None and now - self._last[0] >= 0.4:
            dt = now - self._last[0]
            prev = self._last[1]
            self._rates = (
                (stats.get("acked", 0) - prev.get("acked", 0)) / dt,
                (stats.get("acked_readings", 0) - prev.get("acked_readings", 0)) / dt,
            )
            self._last = (now, stats)
        elif self._last is None:
            self._last = (now, stats)
        if self._live is not None:
            self._live.update(self._table(stats))

    def _table(self, stats: dict[str, Any]) -> Table:
        table = Table(title="rpm device simulator", show_header=False, min_width=52)
        table.add_column("what", style="bold")
        table.add_column("value", justify="right")
        for _key, label, fmt in ROWS:
            table.add_row(label, fmt(stats))
        table.add_row("acknowledged msg/s", f"{self._rates[0]:,.0f}")
        table.add_row("acknowledged readings/s", f"{self._rates[1]:,.0f}")
        table.add_row("simulated time (UTC)", _sim_time(stats))
        return table


def summary_lines(stats: dict[str, Any]) -> list[str]:
    elapsed = max(float(stats.get("elapsed", 0.0)), 1e-9)
    return [
        f"devices           {stats.get('devices', 0):,} ({stats.get('refused_logins', 0):,} refused logins; "
        f"connected in {stats.get('connect_seconds', 0.0):.1f} s)",
        f"generated         {stats.get('generated', 0):,} messages, {stats.get('generated_readings', 0):,} readings",
        f"acknowledged      {stats.get('acked', 0):,} messages, {stats.get('acked_readings', 0):,} readings",
        f"queued at exit    {stats.get('queued', 0):,} messages (kept on disk, sent on the next run)",
        f"refused (>=0x80)  {stats.get('failed', 0):,}",
        f"resent            {stats.get('resent', 0):,}; connections lost {stats.get('lost_connections', 0):,}",
        f"elapsed           {elapsed:,.1f} s; {stats.get('acked_readings', 0) / elapsed:,.0f} readings/s acknowledged",
        f"simulated time    {_sim_time(stats)}",
    ]
