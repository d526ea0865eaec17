"""Fixtures: real Mosquitto, Kafka-protocol broker and TimescaleDB (and, when asked, the
platform processes) started by the stack runner on free ports in a temporary state dir."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from infra.prometheus import Prometheus
from infra.stack import Ports, Stack


def _state_dir(name: str) -> Path:
    # Under /tmp (world-traversable) rather than pytest's 0700 tmp dirs: the servers run as
    # their own unprivileged users when the suite runs as root.
    path = Path(tempfile.mkdtemp(prefix=f"rpm-{name}-"))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """One stack for the session: services always, platform processes on demand."""
    state = _state_dir("test")
    running = Stack(state, Ports.free(), quiet=True)
    try:
        running.start(["mosquitto", "kafka", "postgres"])
        yield running
    finally:
        running.stop()
        if not os.environ.get("RPM_KEEP_TEST_STATE"):
            shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def platform(stack: Stack) -> Stack:
    """The whole platform: services plus ingest bridge, Faust worker and API."""
    stack.start(["ingest", "streams", "api"])
    return stack


@pytest.fixture(scope="session")
def prometheus(platform: Stack) -> Prometheus:
    """The stack's own Prometheus scraping every platform process (the alert service started
    too), returned once each target is up and scraped twice: `prometheus.query("...")` runs
    PromQL against what the running processes really expose (dashboard panels, for example)."""
    platform.start(["alerts", "prometheus"])
    running = Prometheus(platform.ports.prometheus)
    running.wait_until_up(timeout=90)
    return running


@pytest.fixture
def db(stack: Stack) -> Iterator[psycopg.Connection]:
    """An autocommit superuser connection to the platform database (test set-up and checks)."""
    with psycopg.connect(stack.admin_db_url, autocommit=True) as conn:
        yield conn
