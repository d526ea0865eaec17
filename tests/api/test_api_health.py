"""Liveness and readiness probes against the real MQTT broker, Kafka broker and database.

Readiness details (which broker, at which address, what failed) are for ops and admin
users; anybody else learns only whether the API is ready."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.settings import ApiSettings
from tests.api.support import assert_problem, closed_port

pytestmark = pytest.mark.anyio


@pytest.fixture
def ops_headers(make_user: Any, auth_headers: Any) -> dict[str, str]:
    headers: dict[str, str] = auth_headers(make_user("ops"))
    return headers


async def test_healthz_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_reports_every_dependency_to_ops_when_all_are_up(
    client: httpx.AsyncClient, ops_headers: dict[str, str]
) -> None:
    response = await client.get("/readyz", headers=ops_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "kafka", "mqtt"}
    assert all(check["ok"] for check in body["checks"].values()), body
    assert "broker" in body["checks"]["kafka"]["detail"]


@pytest.mark.parametrize("role", [None, "clinician", "patient"])
async def test_readyz_tells_anyone_else_only_the_status(
    client: httpx.AsyncClient, make_user: Any, make_patient: Any, auth_headers: Any, role: str | None
) -> None:
    headers = {}
    if role is not None:
        user = make_user(role, patient_id=make_patient() if role == "patient" else None)
        headers = auth_headers(user)
    response = await client.get("/readyz", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready"}


async def test_readyz_names_kafka_to_ops_when_its_port_is_closed(
    settings_for: Callable[..., ApiSettings], serve: Any, ops_headers: dict[str, str]
) -> None:
    settings = settings_for(kafka_bootstrap=f"127.0.0.1:{closed_port()}")
    async with serve(create_app(settings)) as client:
        response = await client.get("/readyz", headers=ops_headers)
        anonymous = await client.get("/readyz")
    body = assert_problem(response, 503, "not_ready")
    assert body["failing"] == ["kafka"]
    assert "kafka" in body["detail"]
    assert body["checks"]["kafka"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["mqtt"]["ok"] is True

    anonymous_body = assert_problem(anonymous, 503, "not_ready")
    assert anonymous_body["detail"] == "not ready"
    assert "checks" not in anonymous_body
    assert "failing" not in anonymous_body
    assert "127.0.0.1" not in anonymous.text


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
    # Without a database no token can be checked: the answer is the anonymous one.
    body = assert_problem(response, 503, "not_ready")
    assert body["detail"] == "not ready"
