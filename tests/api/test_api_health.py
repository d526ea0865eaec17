"""Liveness and readiness probes against the real MQTT broker, Kafka broker and database."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_healthz_answers_ok(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_every_dependency_when_all_are_up(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "kafka", "mqtt"}
    assert all(check["ok"] for check in body["checks"].values())
    assert "broker" in body["checks"]["kafka"]["detail"]


def test_readyz_names_kafka_when_its_port_is_closed(
    settings_for: Callable[..., ApiSettings], assert_problem: Callable[..., dict[str, Any]]
) -> None:
    settings = settings_for(kafka_bootstrap=f"127.0.0.1:{closed_port()}")
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    body = assert_problem(response, 503, "not_ready")
    assert body["failing"] == ["kafka"]
    assert "kafka" in body["detail"]
    assert body["checks"]["kafka"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["mqtt"]["ok"] is True


def test_readyz_names_mqtt_and_database_when_both_are_unreachable(
    settings_for: Callable[..., ApiSettings], assert_problem: Callable[..., dict[str, Any]]
) -> None:
    settings = settings_for(
        mqtt_port=closed_port(),
        database_url=f"postgresql://rpm_app:x@127.0.0.1:{closed_port()}/rpm",
        readiness_timeout=0.5,
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200  # liveness does not depend on them
        response = client.get("/readyz")
    body = assert_problem(response, 503, "not_ready")
    assert sorted(body["failing"]) == ["database", "mqtt"]
    assert body["checks"]["kafka"]["ok"] is True
