"""Every PromQL query of the dashboards and the ops alert rules, evaluated by the test stack's
own Prometheus scraping the running platform processes (the `prometheus` fixture), as a
time-series panel runs it (a range query, Grafana's `$__rate_interval` replaced as Grafana
would for a 5 s scrape): Prometheus accepts it, every metric it names is one a scraped process
declares, and it returns series unless the only metrics it reads are labelled ones no event has
created yet (dead letters by reason, escalations by tier: nothing was rejected or escalated).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from infra.prometheus import Prometheus
from infra.stack import Stack
from tests.helpers import Device, create_patient, provision, reading, wait_for
from tests.infra.test_grafana_promql import _expressions

METRIC = re.compile(r"\b(?:rpm|process)_[a-z0-9_]+")
SUFFIXES = ("", "_total", "_bucket", "_count", "_sum")
RATE_INTERVAL = "20s"  # Grafana: max(interval + scrape interval, 4 x scrape interval) for a 5 s scrape
EXPRESSIONS = _expressions()


@pytest.fixture(scope="module")
def traffic(prometheus: Prometheus, platform: Stack) -> None:
    """Readings from a real device through the running platform, one of them implausible, so
    the per-reason and per-lane series exist; waits until Prometheus has scraped them twice."""
    with psycopg.connect(platform.admin_db_url, autocommit=True) as db:
        patient = create_patient(db)
    creds = provision(platform, patient)
    device = Device(platform, creds.username, creds.password)
    device.connect()
    try:
        at = datetime.now(UTC) - timedelta(seconds=20)
        device.send(1, [reading("heart_rate", 72, "/min", at), reading("spo2", 97, "%", at)])
        device.send(2, [reading("heart_rate", 999, "/min", at + timedelta(seconds=5))])  # beyond plausible
    finally:
        device.close()
    wait_for(
        lambda: (
            # every new series scraped twice at least, so rate() over it has two samples
            prometheus.query("min(count_over_time(rpm_ingest_rejected_total[1m])) >= 2")
            and prometheus.query("sum(rpm_streams_stored_readings_total) > 0")
        ),
        timeout=90,
        interval=1,
    )


@pytest.fixture(scope="module")
def declared(prometheus: Prometheus, traffic: None) -> set[str]:
    """Metric names the scraped processes declare (HELP/TYPE), with or without samples."""
    body = httpx.get(f"http://127.0.0.1:{prometheus.port}/api/v1/metadata", timeout=10.0).json()
    assert body["status"] == "success"
    return set(body["data"])


def _family(name: str) -> str:
    return re.sub(r"_(total|bucket|count|sum)$", "", name)


def _family_has_series(prometheus: Prometheus, name: str) -> bool:
    pattern = "|".join(_family(name) + s for s in SUFFIXES)
    return bool(prometheus.query(f'count({{__name__=~"{pattern}"}})'))


@pytest.mark.parametrize("where", sorted(EXPRESSIONS))
def test_promql_runs_on_the_stacks_prometheus(where: str, prometheus: Prometheus, declared: set[str]) -> None:
    expr = EXPRESSIONS[where].replace("$__rate_interval", RATE_INTERVAL)
    names = set(METRIC.findall(expr))
    assert names, expr
    undeclared = {n for n in names if n not in declared and _family(n) not in declared}
    assert not undeclared, f"no scraped process declares {sorted(undeclared)}"
    end = time.time()
    result = prometheus.query_range(expr, end - 120, end, 5)  # raises PrometheusError when refused
    if not result:
        with_series = sorted(n for n in names if _family_has_series(prometheus, n))
        assert not with_series, f"{expr} returned nothing although {with_series} have series"
