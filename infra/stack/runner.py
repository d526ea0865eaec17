"""The local stack as one object: start the components in order, and report each one's health."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

import psycopg

from infra.stack.platform import Platform
from infra.stack.probes import http_status, port_answers, progress_probe, smtp_greets


class Stack(Platform):
    """One local stack rooted in a state directory."""

    STARTERS: Final = ("mosquitto", "kafka", "postgres", "smtp", "prometheus", "ingest", "streams", "alerts", "api")

    def start(self, components: Iterable[str] = STARTERS) -> None:
        for component in components:
            getattr(self, f"start_{component}")()

    def health(self) -> dict[str, tuple[bool, str]]:
        """Each component's health: (healthy, detail)."""
        result: dict[str, tuple[bool, str]] = {}

        def check(name: str, probe: Callable[[], tuple[bool, str]]) -> None:
            if self.pid(name) is None:
                result[name] = (False, "not running")
                return
            try:
                result[name] = probe()
            except Exception as exc:
                result[name] = (False, f"unhealthy: {exc}")

        check("mosquitto", lambda: (port_answers(self.ports.mqtt), f"127.0.0.1:{self.ports.mqtt}"))
        check("kafka", lambda: (port_answers(self.ports.kafka), self.kafka_bootstrap))

        def pg() -> tuple[bool, str]:
            with psycopg.connect(self.admin_db_url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True, f"127.0.0.1:{self.ports.postgres}"

        check("postgres", pg)
        if self._pidfile("smtp").exists():
            check(
                "smtp", lambda: (smtp_greets(self.ports.smtp), f"127.0.0.1:{self.ports.smtp}, mail in {self.maildir}")
            )
        check("ingest", lambda: progress_probe(self.ports.ingest_metrics, "ingest"))
        check("streams", lambda: progress_probe(self.ports.streams_metrics, "streams"))
        check("alerts", lambda: progress_probe(self.ports.alerts_metrics, "alerts"))
        check("api", lambda: (http_status(self.ports.api, "/readyz") == 200, f"http://127.0.0.1:{self.ports.api}"))
        if self._pidfile("prometheus").exists():
            check("prometheus", self._prometheus_probe)
        if self._pidfile("simulator").exists():
            check("simulator", lambda: (True, "publishing"))
        if self._pidfile("watchdog").exists():
            check("watchdog", lambda: (True, "restarting crashed platform processes"))
        return result

    def _prometheus_probe(self) -> tuple[bool, str]:
        from infra import prometheus

        if not prometheus.ready(self.ports.prometheus):
            return False, f"http://127.0.0.1:{self.ports.prometheus} not ready"
        found = prometheus.targets(self.ports.prometheus)
        down = sorted(t["labels"].get("job", "?") for t in found if t.get("health") != "up")
        seen = f"{len(found) - len(down)}/{len(found)} targets up" + (f" (down: {', '.join(down)})" if down else "")
        return True, f"http://127.0.0.1:{self.ports.prometheus}, {seen}"

    def readings_last_minute(self) -> int:
        with psycopg.connect(self.admin_db_url, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT count(*) FROM observations WHERE received_at > now() - interval '1 minute'"
            ).fetchone()
        return int(row[0]) if row else 0
