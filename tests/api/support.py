"""Helpers shared by the API tests: the test password, problem assertions, a closed port."""

from __future__ import annotations

import socket
from typing import Any

import httpx

PASSWORD = "correct horse battery staple"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert an RFC 9457 problem answer (status, media type, members, code); return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"tag:rpm-platform,2025:problem:{code}"
    assert body["title"]
    assert body["detail"]
    return body


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port
