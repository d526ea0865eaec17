"""Security headers on every answer: no caching of health data, no sniffing, no framing, a
Content-Security-Policy (strict for data, hash-pinned inline scripts for the docs page), and
HSTS when the request came over TLS."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.settings import ApiSettings

pytestmark = pytest.mark.anyio


async def test_health_data_answers_are_not_stored_and_not_sniffed(
    client: httpx.AsyncClient, make_patient: Any, make_user: Any, auth_headers: Any
) -> None:
    patient_id = make_patient()
    headers = auth_headers(make_user("patient", patient_id=patient_id))
    for response in (
        await client.get(f"/api/v1/patients/{patient_id}/observations", params={"metric": "spo2"}, headers=headers),
        await client.get("/api/v1/me", headers=headers),
        await client.get("/api/v1/patients/someone-else/observations?metric=spo2", headers=headers),  # 404
        await client.get("/api/v1/nothing-here"),
    ):
        assert response.headers["cache-control"] == "no-store", response.request.url
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert "strict-transport-security" not in response.headers  # plain HTTP


async def test_the_docs_page_has_a_csp_pinning_its_inline_script_and_forbidding_frames(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "default-src 'none'" in csp
    assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";", 1)[0]
    [inline] = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_hsts_when_served_over_tls_directly_or_through_a_trusted_proxy(
    settings_for: Callable[..., ApiSettings],
) -> None:
    app = create_app(settings_for(api_trusted_proxies="127.0.0.1"))
    direct = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver")
    proxied = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 40000)), base_url="http://testserver"
    )
    stranger = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("198.51.100.1", 40000)), base_url="http://testserver"
    )
    async with direct, proxied, stranger:
        over_tls = await direct.get("/healthz")
        via_proxy = await proxied.get("/healthz", headers={"X-Forwarded-Proto": "https"})
        forged = await stranger.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert over_tls.headers["strict-transport-security"].startswith("max-age=")
    assert via_proxy.headers["strict-transport-security"].startswith("max-age=")
    assert "strict-transport-security" not in forged.headers
