"""Helpers shared by the API tests: the test password, problem assertions, a closed port, an
alert as the alert service opens it and the count of a user's audited alert reads."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from tests.api.conftest import TestUser

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


def raise_alert(
    db: psycopg.Connection,
    patient_id: str,
    *,
    rule: str = "spo2_low",
    severity: str = "high",
    age: timedelta = timedelta(minutes=5),
    queued: tuple[str, ...] = (),
) -> str:
    """An open alert as the alert service opens it, with its history row and queued notifications."""
    alert_id = str(uuid.uuid4())
    opened = datetime.now(UTC) - age
    db.execute(
        "INSERT INTO alerts (id, patient_id, rule, severity, state, title, evidence, opened_at, updated_at, "
        "detection_ids, last_triggered_at, next_escalation_at) VALUES (%s, %s, %s, %s, 'open', %s, %s, %s, %s, %s, "
        "%s, %s)",
        (
            alert_id,
            patient_id,
            rule,
            severity,
            f"{rule} ({severity})",
            Jsonb({"value": 88}),
            opened,
            opened,
            [f"det-{uuid.uuid4().hex}"],
            opened,
            opened + timedelta(minutes=15),
        ),
    )
    db.execute(
        "INSERT INTO alert_events (alert_id, at, from_state, to_state, patient_id, kind, detail) "
        "VALUES (%s, %s, NULL, 'open', %s, 'opened', %s)",
        (alert_id, opened, patient_id, Jsonb({"why": "detection raised"})),
    )
    for channel in queued:
        db.execute(
            "INSERT INTO notifications (alert_id, tier, channel, recipient, due_at) VALUES (%s, 1, %s, %s, %s)",
            (alert_id, channel, f"{channel}-recipient@example.org", opened + timedelta(minutes=15)),
        )
    return alert_id


def audit_count(db: psycopg.Connection, user: TestUser) -> int:
    row = db.execute(
        "SELECT count(*) FROM audit_events WHERE actor_id = %s AND resource = 'alert'", (user.id,)
    ).fetchone()
    assert row is not None
    return int(row[0])
