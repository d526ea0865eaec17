"""The API process after a database restart: the idle connections of its pool died with the old
server, and the next requests must not be the ones that find out (the pool checks before lending)."""

from __future__ import annotations

import uuid

import httpx
import psycopg

from infra.stack import Stack
from tests.e2e.test_walking_skeleton import _clinician_for
from tests.helpers import create_patient


def _logins(stack: Stack, username: str, password: str, n: int) -> list[int]:
    url = f"http://127.0.0.1:{stack.ports.api}/api/v1/auth/token"
    return [
        httpx.post(url, data={"username": username, "password": password}, timeout=30).status_code for _ in range(n)
    ]


def test_requests_after_a_database_restart_succeed(platform: Stack) -> None:
    with psycopg.connect(platform.admin_db_url, autocommit=True) as db:
        patient = create_patient(db, f"restart-{uuid.uuid4().hex[:8]}")
        username, password = _clinician_for(db, patient)
    # Warm the pool: several connections are idle in it when the server goes away.
    assert _logins(platform, username, password, 4) == [200] * 4

    platform.stop(["postgres"])
    platform.start(["postgres"])

    # Every request after the restart is answered, the first ones included.
    assert _logins(platform, username, password, 4) == [200] * 4
