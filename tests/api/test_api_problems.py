"""Every error is an RFC 9457 problem document with a stable code, a crash and an
unreachable database included: never a bare 500 or an HTML page."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.settings import ApiSettings
from tests.api.support import assert_problem

pytestmark = pytest.mark.anyio


async def test_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/nothing-here")
    body = assert_problem(response, 404, "not_found")
    assert body["instance"] == "/api/v1/nothing-here"
    assert body["type"] == "tag:rpm-platform,2025:problem:not_found"


async def test_wrong_method_is_a_405_problem(client: httpx.AsyncClient) -> None:
    response = await client.delete("/api/v1/auth/token")
    assert_problem(response, 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]


async def test_a_crash_is_a_500_problem_without_internals(
    settings: ApiSettings,
    serve: Any,
) -> None:
    app = create_app(settings)

    async def explode() -> None:
        raise RuntimeError("secret internal state")

    app.add_api_route("/explode", explode)
    async with serve(app) as client:
        response = await client.get("/explode")
    body = assert_problem(response, 500, "internal_error")
    assert "secret internal state" not in response.text
    assert body["instance"] == "/explode"


async def test_unreachable_database_is_a_503_problem_with_retry_after(
    settings_for: Callable[..., ApiSettings],
    serve: Any,
    make_user: Any,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = settings_for(database_url=f"postgresql://rpm_app:x@127.0.0.1:{port}/rpm", db_acquire_timeout=0.3)
    async with serve(create_app(settings)) as client:
        response = await client.post("/api/v1/auth/token", data={"username": "someone", "password": "pw"})
    assert_problem(response, 503, "database_unavailable")
    assert response.headers["retry-after"] == "5"


async def test_openapi_documents_problem_answers(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/api/v1/patients/{patient_id}/observations"]["get"]
    assert "application/problem+json" in operation["responses"]["404"]["content"]
    assert {p["name"] for p in operation["parameters"]} >= {"patient_id", "metric", "start", "end", "limit"}
