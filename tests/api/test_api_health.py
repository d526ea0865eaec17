"""Liveness and readiness probes against the real MQTT broker, Kafka broker and database."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.settings import ApiSettings

pytestmark = [
    pytest.mark.anyio,
    # Starting the session `stack` fixture drops running Popen objects (infra/stack.py) and
    # yoyo's migration connection (core/db.py) without closing them; their ResourceWarnings
    # land on whichever test starts the stack first. Outside our folder: reported to the
    # lead, remove these two filters once fixed there. Both are narrow: sync psycopg
    # connections and subprocesses, neither of which the API code uses.
    pytest.mark.filterwarnings(r"ignore:subprocess \d+ is still running:ResourceWarning"),
    pytest.mark.filterwarnings(r"ignore:<psycopg.Connection object at .*> was deleted:ResourceWarning"),
]


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_healthz_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_reports_every_dependency_when_all_are_up(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "kafka", "mqtt"}
    assert all(check["ok"] for check in body["checks"].values()), body
    assert "broker" in body["checks"]["kafka"]["detail"]


async def test_readyz_names_kafka_when_its_port_is_closed(
    settings_for: Callable[..., ApiSettings], serve: Any, assert_problem: Callable[..., dict[str, Any]]
) -> None:
    settings = settings_for(kafka_bootstrap=f"127.0.0.1:{closed_port()}")
    async with serve(create_app(settings)) as client:
        response = await client.get("/readyz")
    body = assert_problem(response, 503, "not_ready")
    assert body["failing"] == ["kafka"]
    assert "kafka" in body["detail"]
    assert body["checks"]["kafka"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["mqtt"]["ok"] is True


async def test_readyz_names_mqtt_and_database_when_both_are_unreachable(
    settings_for: Callable[..., ApiSettings], serve: Any, assert_problem: Callable[..., dict[str, Any]]
) -> None:
    settings = settings_for(
        mqtt_port=closed_port(),
        database_url=f"postgresql://rpm_app:x@127.0.0.1:{closed_port()}/rpm",
        readiness_timeout=0.5,
    )
    async with serve(create_app(settings)) as client:
        assert (await client.get("/healthz")).status_code == 200  # liveness does not depend on them
        response = await client.get("/readyz")
    body = assert_problem(response, 503, "not_ready")
    assert sorted(body["failing"]) == ["database", "mqtt"]
    assert body["checks"]["kafka"]["ok"] is True
