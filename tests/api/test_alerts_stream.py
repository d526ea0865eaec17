"""The live alert stream against a real API process (`python -m api` of the test stack):
history rows written as the alert service writes them arrive as server-sent events within
the caller's scope only; a reconnect with Last-Event-ID replays exactly the missed events;
the pages' session cookie authorises it like a bearer token; a listener whose database
connection is killed reconnects and the stream carries on without losing an event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from api.alerts.stream import QUEUE_SIZE, AlertEventHub
from api.settings import ApiSettings
from infra.stack import Stack
from tests.api.conftest import TestUser
from tests.api.support import PASSWORD, assert_problem, closed_port, raise_alert

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
# A guard against a hang, not a measurement: an event that never comes fails the test.
WAIT_S = 30.0


@pytest.fixture(scope="module")
def api_url(stack: Stack) -> str:
    stack.start(["api"])
    return f"http://127.0.0.1:{stack.ports.api}"


async def token_of(http: httpx.AsyncClient, user: TestUser) -> str:
    answer = await http.post("/api/v1/auth/token", data={"username": user.username, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


async def events(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """The stream's events and comments, one dict of fields per block."""
    block: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if block:
                yield block
            block = {}
            continue
        if line.startswith(":"):
            block.setdefault("comment", line[1:].strip())
            continue
        name, _, value = line.partition(":")
        block[name] = value.removeprefix(" ")


async def next_event(stream: AsyncIterator[dict[str, str]]) -> dict[str, Any]:
    """The next event with an id (comments skipped), its data decoded."""
    async with asyncio.timeout(WAIT_S):
        async for block in stream:
            if "id" in block:
                data: dict[str, Any] = json.loads(block["data"])
                assert int(block["id"]) == data["id"]
                return data
    raise AssertionError("the stream ended")


async def connected(stream: AsyncIterator[dict[str, str]]) -> None:
    async with asyncio.timeout(WAIT_S):
        first = await anext(stream)
    assert first.get("comment") == "connected", first
    assert first.get("retry")


def add_event(db: psycopg.Connection, alert_id: str, patient_id: str, note: str) -> int:
    """A history row as the alert service (or another API process) writes it."""
    row = db.execute(
        "INSERT INTO alert_events (alert_id, at, from_state, to_state, note, patient_id, kind, detail) "
        "VALUES (%s, now(), 'open', 'open', %s, %s, 'note', %s) RETURNING id",
        (alert_id, note, patient_id, Jsonb({})),
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def people(
    make_patient: Callable[[], str],
    make_user: Callable[..., TestUser],
    make_care_team: Callable[..., uuid.UUID],
) -> dict[str, Any]:
    patient, other = make_patient(), make_patient()
    clinician, outsider = make_user("clinician"), make_user("clinician")
    make_care_team([clinician], [patient])
    make_care_team([outsider], [other])
    return {"patient": patient, "other": other, "clinician": clinician, "outsider": outsider}


async def test_events_arrive_in_scope_and_a_resume_replays_exactly_the_missed_ones(
    api_url: str, db: psycopg.Connection, people: dict[str, Any]
) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=WAIT_S) as http:
        token = await token_of(http, people["clinician"])
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        assert_problem(
            await http.get("/api/v1/alerts/stream", headers={"Accept": "text/event-stream"}), 401, "not_authenticated"
        )
        assert_problem(
            await http.get("/api/v1/alerts/stream", headers={"Authorization": f"Bearer {token}"}),
            406,
            "not_acceptable",
        )
        refused = db.execute(
            "SELECT outcome, detail->>'reason' FROM audit_events WHERE actor_id = %s AND action = 'stream'",
            (people["clinician"].id,),
        ).fetchall()
        assert refused == [("denied", "not_acceptable")]

        async with http.stream("GET", "/api/v1/alerts/stream", headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = events(response)
            await connected(stream)
            # Another team's alert first: were it leaked, it would be the first event seen.
            raise_alert(db, people["other"])
            alert_id = raise_alert(db, people["patient"])
            opened = await next_event(stream)
            assert opened["alert_id"] == alert_id
            assert opened["kind"] == "opened"
            assert opened["patient_id"] == people["patient"]
            assert opened["severity"] == "high"
            assert opened["state"] == "open"
            first_note = add_event(db, alert_id, people["patient"], "one")
            assert (await next_event(stream))["id"] == first_note
        last_seen = first_note

        # Missed while away: two of ours and one of another team's.
        missed = [
            add_event(db, alert_id, people["patient"], "two"),
            add_event(db, alert_id, people["patient"], "three"),
        ]
        other_alert = raise_alert(db, people["other"], rule="hr_high")
        add_event(db, other_alert, people["other"], "theirs")

        resume = {**headers, "Last-Event-ID": str(last_seen)}
        async with http.stream("GET", "/api/v1/alerts/stream", headers=resume) as response:
            stream = events(response)
            await connected(stream)
            assert [(await next_event(stream))["id"] for _ in missed] == missed
            live = add_event(db, alert_id, people["patient"], "four")
            # Next comes the live one: nothing replayed twice, nothing of the other team.
            assert (await next_event(stream))["id"] == live

        # The pages' session cookie and the query parameter (a browser's EventSource).
        cookie_headers = {"Accept": "text/event-stream", "Cookie": f"rpm_session={token}"}
        params = {"last_event_id": str(missed[0])}
        async with http.stream("GET", "/api/v1/alerts/stream", headers=cookie_headers, params=params) as response:
            assert response.status_code == 200
            stream = events(response)
            await connected(stream)
            assert (await next_event(stream))["id"] == missed[1]
            assert (await next_event(stream))["id"] == live

    audited = db.execute(
        "SELECT outcome FROM audit_events WHERE actor_id = %s AND action = 'stream' ORDER BY id",
        (people["clinician"].id,),
    ).fetchall()
    assert audited == [("denied",)] + [("allowed",)] * 3


async def test_the_listener_reconnects_when_its_connection_dies(
    api_url: str, db: psycopg.Connection, people: dict[str, Any]
) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=WAIT_S) as http:
        token = await token_of(http, people["clinician"])
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        async with http.stream("GET", "/api/v1/alerts/stream", headers=headers) as response:
            stream = events(response)
            await connected(stream)
            alert_id = raise_alert(db, people["patient"])
            assert (await next_event(stream))["alert_id"] == alert_id
            killed = db.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE query = 'LISTEN rpm_alert_events' AND pid <> pg_backend_pid()"
            ).fetchone()
            assert killed is not None
            assert killed[0] >= 1
            # Written while the listener is away or coming back: caught up from the database
            # when it reconnects, or heard live once it has.
            during = add_event(db, alert_id, people["patient"], "during the outage")
            assert (await next_event(stream))["id"] == during
            after = add_event(db, alert_id, people["patient"], "after")
            assert (await next_event(stream))["id"] == after


def test_a_stopping_api_process_ends_its_streams(
    settings: ApiSettings,
    tmp_path: Path,
    people: dict[str, Any],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    """uvicorn waits for open responses before it shuts the app down; a stream never ends by
    itself, so without the hub's signal hook SIGTERM would leave the process waiting."""
    port = closed_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RPM_")},
        "PYTHONPATH": str(ROOT),
        "RPM_ENVIRONMENT": "test",
        "RPM_DATABASE_URL": settings.database_url.get_secret_value(),
        "RPM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "RPM_MQTT_HOST": settings.mqtt_host,
        "RPM_MQTT_PORT": str(settings.mqtt_port),
        "RPM_MQTT_ADMIN_PASSWORD": settings.mqtt_admin_password.get_secret_value(),
        "RPM_JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "RPM_API_PORT": str(port),
    }
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "api"], cwd=tmp_path, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            assert process.poll() is None, log_path.read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        headers = {**auth_headers(people["clinician"]), "Accept": "text/event-stream"}
        with httpx.stream("GET", f"{url}/api/v1/alerts/stream", headers=headers, timeout=WAIT_S) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            assert next(lines).startswith("retry:")
            process.send_signal(signal.SIGTERM)
            # The stream ends and the process exits by itself. Heartbeats keep a stream that
            # does not end readable: the deadline is the guard against waiting forever.
            deadline = time.monotonic() + WAIT_S
            for line in lines:
                assert not line.startswith("id:")
                assert time.monotonic() < deadline, "the stream did not end on SIGTERM"
        # uvicorn re-raises the signal it handled once it has shut down: -SIGTERM is a clean exit.
        assert process.wait(timeout=WAIT_S) in (0, -signal.SIGTERM), log_path.read_text()
        assert "Application shutdown complete" in log_path.read_text()
        assert "Traceback" not in log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_a_slow_client_is_dropped_and_the_others_keep_streaming(
    settings: ApiSettings, db: psycopg.Connection, people: dict[str, Any]
) -> None:
    """The hub itself, in this process, over the real database: a client that reads nothing
    fills its queue and is dropped; the listener and the other clients carry on."""
    url = settings.database_url.get_secret_value()
    async with AsyncConnectionPool(url, min_size=1, max_size=2, open=False) as pool:
        hub = AlertEventHub(url, pool)
        hub.start()
        try:
            async with asyncio.timeout(WAIT_S):
                await hub.connected.wait()
            slow, fast = hub.subscribe(), hub.subscribe()
            alert_id = raise_alert(db, people["patient"])
            with db.cursor() as cur:
                cur.executemany(
                    "INSERT INTO alert_events (alert_id, at, from_state, to_state, patient_id, kind, detail) "
                    "VALUES (%s, now(), 'open', 'open', %s, 'note', '{}')",
                    [(alert_id, people["patient"])] * (QUEUE_SIZE + 10),
                )
            received = 0
            async with asyncio.timeout(WAIT_S):
                while received < QUEUE_SIZE + 11:  # the opening and the notes
                    item = await fast.queue.get()
                    assert isinstance(item, dict)
                    received += 1
            assert slow.dropped
            assert slow.queue.get_nowait() is None  # its stream ends
            assert hub.clients == 1
            last = add_event(db, alert_id, people["patient"], "still streaming")
            async with asyncio.timeout(WAIT_S):
                item = await fast.queue.get()
            assert isinstance(item, dict)
            assert item["id"] == last
        finally:
            await hub.stop()
