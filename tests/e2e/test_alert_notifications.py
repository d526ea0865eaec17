"""End to end through the real stack: a simulated hypoxic episode becomes one alert, an event
on the clinician's open alert stream (SSE, what the live inbox listens to), an e-mail in the
stack's maildir for the care team's clinician and a signed webhook received by a loopback
server; acknowledging the alert stops its escalation.

Two patients of one care team play the simulator's hypoxia scenario at once. The team's
escalation tiers (rows of `escalation_tiers`) notify by e-mail and webhook when an alert opens
(tier 0) and again when it is still not acknowledged `TIER1_AFTER_S` later (tier 1). The first
patient's alert is acknowledged by the clinician through the API process
(`POST /api/v1/alerts/{id}/acknowledge` with a bearer token from `/api/v1/auth/token`) as
soon as its tier-0 e-mail and webhook have arrived; the second's is left alone and shows
that the tier timer does run: it reaches tier 1 while the acknowledged alert, past its own
tier-1 time, gets nothing more.

The stack's alert service is configured by the stack runner: e-mail to its SMTP server
(infra/smtp.py, maildir under the state directory), webhooks allowed to 127.0.0.1 only because
the local stack says so (RPM_WEBHOOK_ALLOW_LOOPBACK, development).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.security import hash_password
from devices.simulator.config import write_credentials
from devices.simulator.provisioning import backdated, care_plans, plan_population, provision, publish_care_plans
from infra.stack import Stack
from tests.helpers import unique, wait_for
from tests.streams.support import metric_samples

ROOT = Path(__file__).resolve().parents[2]
SPEED = 30.0
DURATION_S = 90  # 45 simulated minutes
TIER1_AFTER_S = 45  # the acknowledgement comes long before; the canary waits this long
SECRET = "e2e-webhook-secret-" + "s" * 24
PASSWORD = "e2e-clinician-password-" + "p" * 12


@dataclass
class Hook:
    headers: dict[str, str]
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    received: list[Hook]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append(Hook({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[Hook]]]:
    """A loopback HTTP server that records every POST and answers 204."""
    received: list[Hook] = []
    handler = type("Handler", (_Handler,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/rpm-alerts", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _plans_applied(stack: Stack) -> float:
    return sum(metric_samples(stack.ports.streams_metrics, "rpm_streams_care_plans_total").values())


def _team(db: psycopg.Connection, patients: list[str], hook_url: str) -> tuple[str, str]:
    """A care team with one clinician (a password, an e-mail address), the patients, two tiers,
    a webhook; returns the clinician's user name and address."""
    team = db.execute("INSERT INTO care_teams (name) VALUES (%s) RETURNING id", (unique("e2e-team"),)).fetchone()
    username = unique("e2e-dr")
    user = db.execute(
        "INSERT INTO users (username, password_hash, role, display_name) VALUES (%s, %s, 'clinician', 'Dr E2E') "
        "RETURNING id",
        (username, hash_password(PASSWORD)),
    ).fetchone()
    assert team is not None
    assert user is not None
    address = f"{unique('e2e-dr')}@clinic.test"
    db.execute("INSERT INTO notification_settings (user_id, email) VALUES (%s, %s)", (user[0], address))
    db.execute("INSERT INTO care_team_members (care_team_id, user_id) VALUES (%s, %s)", (team[0], user[0]))
    for p in patients:
        db.execute("INSERT INTO care_team_patients (care_team_id, patient_id) VALUES (%s, %s)", (team[0], p))
    for tier, after_s in ((0, 0), (1, TIER1_AFTER_S)):
        db.execute(
            "INSERT INTO escalation_tiers (care_team_id, tier, after_s, min_severity, channels) "
            "VALUES (%s, %s, %s, 'info', '{email,webhook}')",
            (team[0], tier, after_s),
        )
    db.execute("INSERT INTO webhooks (care_team_id, url, secret) VALUES (%s, %s, %s)", (team[0], hook_url, SECRET))
    return username, address


def _token(stack: Stack, username: str) -> str:
    api = f"http://127.0.0.1:{stack.ports.api}"
    token = httpx.post(f"{api}/api/v1/auth/token", data={"username": username, "password": PASSWORD}, timeout=30)
    assert token.status_code == 200, token.text
    return str(token.json()["access_token"])


class AlertStream:
    """The clinician's open alert stream (`GET /api/v1/alerts/stream`) read on a thread of its
    own, as an open inbox reads it; `events` holds each event's JSON data as it arrives."""

    def __init__(self, stack: Stack, token: str) -> None:
        self.url = f"http://127.0.0.1:{stack.ports.api}/api/v1/alerts/stream"
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        self.events: list[dict[str, Any]] = []
        self.status: int | None = None
        self.error: Exception | None = None
        self.connected = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        # Never raises: an error while the test still listens is kept for its messages; once
        # the test is done (stop set), the stream may end any way it likes (the API stopped).
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(30, read=45)) as client,
                client.stream("GET", self.url, headers=self.headers) as response,
            ):
                self.status = response.status_code
                for line in response.iter_lines():
                    if line.startswith(": connected"):
                        self.connected.set()
                    elif line.startswith("data: "):
                        self.events.append(json.loads(line[len("data: ") :]))
                    if self.stop.is_set():
                        return
        except (httpx.HTTPError, ValueError) as error:
            if not self.stop.is_set():
                self.error = error

    def close(self) -> None:
        """Stop listening; the reader notices at the next line (a heartbeat comes every 15 s)."""
        self.stop.set()
        self.thread.join(timeout=30)

    def about(self, alert_id: str) -> list[str]:
        return [e["kind"] for e in list(self.events) if e.get("alert_id") == alert_id]


def _acknowledge_through_the_api(stack: Stack, token: str, alert_id: str) -> dict[str, Any]:
    """The clinician acknowledges the alert: the API process's own path."""
    api = f"http://127.0.0.1:{stack.ports.api}"
    answer = httpx.post(
        f"{api}/api/v1/alerts/{alert_id}/acknowledge",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _spo2_alerts(db: psycopg.Connection, patient: str) -> list[tuple[str, str, int, datetime]]:
    rows = db.execute(
        "SELECT id, state, escalation_tier, opened_at FROM alerts WHERE patient_id = %s AND rule = 'spo2_low'",
        (patient,),
    ).fetchall()
    return [(str(r[0]), r[1], int(r[2]), r[3]) for r in rows]


def _outbox(db: psycopg.Connection, alert_id: str) -> list[tuple[int, str, str]]:
    rows = db.execute(
        "SELECT tier, channel, state FROM notifications WHERE alert_id = %s ORDER BY tier, channel", (alert_id,)
    ).fetchall()
    return [(int(r[0]), r[1], r[2]) for r in rows]


def _mail_about(stack: Stack, address: str, alert_id: str) -> list[EmailMessage]:
    found = []
    for path in sorted((stack.maildir / "new").iterdir()):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        body = message.get_body(("plain",))
        if message["X-RPM-Envelope-To"] == address and body is not None and alert_id in body.get_content():
            found.append(message)
    return found


def _hooks_about(received: list[Hook], alert_id: str) -> list[Hook]:
    return [h for h in list(received) if json.loads(h.body)["alert_id"] == alert_id]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_hypoxia_becomes_one_alert_an_email_a_signed_webhook_and_acknowledgement_stops_escalation(
    platform: Stack, db: psycopg.Connection, receiver: tuple[str, list[Hook]], tmp_path: Path
) -> None:
    from alerts.notify.messages import verify

    hook_url, received = receiver
    platform.start_alerts()  # and the SMTP server before it
    roster = plan_population(2, {"healthy": 1.0}, seed=19, prefix=unique("e2e-ntf"))
    acked, canary = [p.patient_id for p in roster.patients]
    start = datetime.now(UTC) - timedelta(seconds=DURATION_S * SPEED + 120)

    async def provision_and_publish() -> None:
        async with await psycopg.AsyncConnection.connect(platform.admin_db_url) as conn:
            with platform.broker_admin() as admin:
                issued = await provision(conn, admin, roster, valid_from=backdated(3))
        applied = _plans_applied(platform)
        await publish_care_plans(platform.kafka_bootstrap, care_plans(issued, start))
        write_credentials(tmp_path / "credentials.json", issued)
        deadline = asyncio.get_running_loop().time() + 60
        while _plans_applied(platform) < applied + 2:
            assert asyncio.get_running_loop().time() < deadline, "the worker did not apply the care plans"
            await asyncio.sleep(0.5)

    asyncio.run(provision_and_publish())
    username, address = _team(db, [acked, canary], hook_url)
    token = _token(platform, username)
    stream = AlertStream(platform, token)
    assert stream.connected.wait(30), f"the alert stream did not open: {stream.status} {stream.error!r}"

    env = {**os.environ, "RPM_MQTT_HOST": "127.0.0.1", "RPM_MQTT_PORT": str(platform.ports.mqtt)}
    scenarios = [
        arg
        for patient in (acked, canary)
        for arg in ("--scenario", f"hypoxia:patient={patient},start=3m,nadir=84,duration=60m")
    ]
    args = [
        sys.executable, "-m", "devices.simulator", "run", "--no-progress",
        "--credentials", str(tmp_path / "credentials.json"), "--speed", str(SPEED), "--duration", str(DURATION_S),
        "--interval", "2", "--drain", "30", "--queue-dir", str(tmp_path / "queue"), "--seed", "19",
        "--start", start.isoformat(), *scenarios,
    ]  # fmt: skip
    sim_log = (tmp_path / "simulator.log").open("wb")
    sim = subprocess.Popen(args, cwd=ROOT, env=env, stdout=sim_log, stderr=subprocess.STDOUT)
    try:
        # One alert, its tier-0 e-mail in the maildir and its signed webhook at the receiver.
        assert wait_for(lambda: len(_spo2_alerts(db, acked)) == 1, timeout=180), "no spo2_low alert"
        [(alert_id, _, _, _)] = _spo2_alerts(db, acked)
        assert wait_for(lambda: _mail_about(platform, address, alert_id), timeout=60), _outbox(db, alert_id)
        assert wait_for(lambda: _hooks_about(received, alert_id), timeout=60), _outbox(db, alert_id)
        # The open inbox heard of it over SSE, without asking.
        assert wait_for(lambda: "opened" in stream.about(alert_id), timeout=30), (stream.error, stream.events[-5:])
        answer = _acknowledge_through_the_api(platform, token, alert_id)
        assert answer["state"] == "acknowledged"
        assert answer["escalation_tier"] == 0, (
            "it escalated before the test could acknowledge it (a very slow machine?)"
        )

        [mail] = _mail_about(platform, address, alert_id)
        assert acked in str(mail["Subject"])
        [hook] = _hooks_about(received, alert_id)
        assert verify(SECRET, hook.headers["x-rpm-signature"], hook.body, now=int(time.time()))
        assert not verify(
            "another-secret-" + "x" * 24, hook.headers["x-rpm-signature"], hook.body, now=int(time.time())
        )
        assert json.loads(hook.body)["patient_id"] == acked

        # The canary, never acknowledged, reaches tier 1: the timer runs. Then wait until the
        # acknowledged alert is past its own tier-1 time by several timer rounds.
        assert wait_for(lambda: len(_spo2_alerts(db, canary)) == 1, timeout=120)
        assert wait_for(lambda: _spo2_alerts(db, canary)[0][2] >= 1, timeout=TIER1_AFTER_S + 90)
        [(canary_id, _, _, _)] = _spo2_alerts(db, canary)
        assert wait_for(lambda: (1, "email", "sent") in _outbox(db, canary_id), timeout=60), _outbox(db, canary_id)
        [(_, _, _, opened_at)] = _spo2_alerts(db, acked)
        tier1_due = opened_at + timedelta(seconds=TIER1_AFTER_S)
        assert wait_for(lambda: datetime.now(UTC) > tier1_due + timedelta(seconds=5), timeout=TIER1_AFTER_S + 30)
        assert wait_for(lambda: "acknowledged" in stream.about(alert_id), timeout=30)
    finally:
        stream.close()
        sim.terminate()
        try:
            sim.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait(timeout=10)
        sim_log.close()

    # Exactly one alert for the episode; acknowledged, never escalated, nothing after tier 0.
    [(alert_id, state, tier, _)] = _spo2_alerts(db, acked)
    assert (state, tier) == ("acknowledged", 0)
    assert _outbox(db, alert_id) == [(0, "email", "sent"), (0, "webhook", "sent")]
    kinds = [r[0] for r in db.execute("SELECT kind FROM alert_events WHERE alert_id = %s ORDER BY id", (alert_id,))]
    assert "escalated" not in kinds
    assert kinds.count("acknowledged") == 1
    assert kinds.count("notified") == 2
    assert len(_mail_about(platform, address, alert_id)) == 1
    assert len(_hooks_about(received, alert_id)) == 1
