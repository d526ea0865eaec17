"""Liveness and readiness probes against the real MQTT broker, Kafka broker and database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.settings import ApiSettings
from tests.api.support import assert_problem, closed_port

pytestmark = pytest.mark.anyio


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


async def test_readyz_names_kafka_when_its_port_is_closed(settings_for: Callable[..., ApiSettings], serve: Any) -> None:
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
    settings_for: Callable[..., ApiSettings], serve: Any
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
