"""The local stack's Prometheus (Debian's `prometheus` binary): the configuration the stack
runner writes into the state directory (one scrape job per platform process, each process's own
`/metrics` port) and a small client of its HTTP API (instant and range queries, targets) for
`make status`, the tests and anyone checking a dashboard's PromQL against real data.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

TEMPLATE: Final = Path(__file__).resolve().parent / "prometheus.yml.template"
# Every 5 s: the local stack is for looking at things as they happen; a production server
# (infra/compose) may scrape less often.
SCRAPE_INTERVAL_S: Final = 5
# The processes Prometheus scrapes, each a job of that name (the `job` label of every series).
JOBS: Final = ("ingest", "streams", "alerts", "api")


class PrometheusError(RuntimeError):
    """Prometheus answered a query with an error (a PromQL syntax error, a timeout)."""


def render_config(targets: Mapping[str, int], interval_s: int = SCRAPE_INTERVAL_S, host: str = "127.0.0.1") -> str:
    """The prometheus.yml: one job per process, scraping `http://host:port/metrics`."""
    jobs = "\n".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: ['{host}:{port}']" for job, port in targets.items()
    )
    timeout = max(1, interval_s - 1)
    return TEMPLATE.read_text().format(interval=f"{interval_s}s", timeout=f"{timeout}s", jobs=jobs)


def _get(port: int, path: str, params: Mapping[str, Any] | None = None, host: str = "127.0.0.1") -> Any:
    response = httpx.get(f"http://{host}:{port}{path}", params=params, timeout=10.0)
    body = response.json()
    if body.get("status") != "success":
        raise PrometheusError(f"{body.get('errorType', response.status_code)}: {body.get('error', response.text)}")
    return body["data"]


def query(port: int, promql: str, *, at: float | None = None) -> list[dict[str, Any]]:
    """An instant query (`/api/v1/query`): the result vector, each item `{"metric": {labels},
    "value": [time, "text"]}`; a scalar or string result comes as a one-item list."""
    params: dict[str, Any] = {"query": promql}
    if at is not None:
        params["time"] = at
    data = _get(port, "/api/v1/query", params)
    if data["resultType"] in ("scalar", "string"):
        return [{"metric": {}, "value": data["result"]}]
    result: list[dict[str, Any]] = data["result"]
    return result


def query_range(port: int, promql: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    """A range query (`/api/v1/query_range`), as a dashboard's time-series panel runs it: each item
    `{"metric": {labels}, "values": [[time, "text"], ...]}`."""
    data = _get(port, "/api/v1/query_range", {"query": promql, "start": start, "end": end, "step": step})
    result: list[dict[str, Any]] = data["result"]
    return result


def targets(port: int) -> list[dict[str, Any]]:
    """The active scrape targets with their `health` (up, down, unknown) and `lastError`."""
    found: list[dict[str, Any]] = _get(port, "/api/v1/targets", {"state": "active"})["activeTargets"]
    return found


def ready(port: int) -> bool:
    """Whether Prometheus answers its readiness endpoint."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass(frozen=True)
class Prometheus:
    """A running Prometheus on loopback, for PromQL against real scraped data (tests, dashboards)."""

    port: int

    def query(self, promql: str, *, at: float | None = None) -> list[dict[str, Any]]:
        return query(self.port, promql, at=at)

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        return query_range(self.port, promql, start, end, step)

    def targets(self) -> list[dict[str, Any]]:
        return targets(self.port)

    def wait_until_up(self, jobs: Iterable[str] = JOBS, timeout: float = 60.0, scrapes: int = 2) -> None:
        """Wait until every job's target was scraped `scrapes` times in a row and is up (so a
        `rate(...[1m])` has two samples to work with); raise naming the ones that are not."""
        wanted = set(jobs)
        deadline = time.monotonic() + timeout
        seen: dict[str, str] = {}
        while True:
            try:
                found = query(self.port, f"count_over_time(up[{scrapes * SCRAPE_INTERVAL_S * 2}s])")
                ups = {r["metric"].get("job", ""): r["value"][1] for r in query(self.port, "up")}
                counts = {r["metric"].get("job", ""): float(r["value"][1]) for r in found}
                seen = {job: f"up={ups.get(job, 'absent')}, scrapes={counts.get(job, 0):g}" for job in wanted}
                if all(ups.get(job) == "1" and counts.get(job, 0) >= scrapes for job in wanted):
                    return
            except (httpx.HTTPError, PrometheusError) as exc:
                seen = {"prometheus": str(exc)}
            if time.monotonic() > deadline:
                raise TimeoutError(f"Prometheus targets not up after {timeout:.0f} s: {seen}")
            time.sleep(0.5)


__all__ = ["JOBS", "Prometheus", "PrometheusError", "query", "query_range", "ready", "render_config", "targets"]
