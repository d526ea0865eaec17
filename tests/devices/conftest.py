"""Fixtures of the simulator tests: devices provisioned through the platform's real path,
an independent MQTT observer (paho, persistent session) that records what the broker
delivered, and a runner for the simulator's command line as a subprocess."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.wire import TOPIC_PREFIX
from devices.simulator.config import Roster, write_credentials
from devices.simulator.provisioning import plan_population, provision
from infra.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
OBSERVER_ROLE = "sim-test-observer"


def provision_roster(stack: Stack, roster: Roster, *, backdate_days: float = 2.0) -> Roster:
    """Create the roster's patients (with consent) and devices through core.clients.provisioning."""
    from devices.simulator.provisioning import backdated

    async def go() -> Roster:
        async with await psycopg.AsyncConnection.connect(stack.admin_db_url) as conn:
            with stack.broker_admin() as admin:
                return await provision(conn, admin, roster, valid_from=backdated(backdate_days))

    return asyncio.run(go())


@pytest.fixture
def provisioned(stack: Stack, tmp_path: Path) -> Callable[..., tuple[Roster, Path]]:
    """Provision N simulated patients (unique ids per test); returns roster and credentials file."""

    def make(
        n: int, *, cohorts: dict[str, float] | None = None, only: tuple[str, ...] = ("wearable",), seed: int = 1
    ) -> tuple[Roster, Path]:
        prefix = f"t{uuid.uuid4().hex[:6]}"
        plan = plan_population(n, cohorts or {"healthy": 1.0}, seed, prefix, only)
        roster = provision_roster(stack, plan)
        path = tmp_path / f"{prefix}-credentials.json"
        write_credentials(path, roster)
        return roster, path

    return make


@dataclass
class Observer:
    """A subscriber to every device topic; keeps what arrived, in arrival order."""

    client: mqtt.Client
    telemetry: list[tuple[str, bytes, bool]] = field(default_factory=list)
    status: list[tuple[str, bytes, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    connected: threading.Event = field(default_factory=threading.Event)

    def on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        entry = (parts[3], bytes(msg.payload), bool(msg.dup))
        with self.lock:
            (self.telemetry if parts[4] == "telemetry" else self.status).append(entry)

    def messages(self, device_id: str | None = None) -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return [m for m in self.telemetry if device_id is None or m[0] == device_id]

    def statuses(self, device_id: str) -> list[bytes]:
        with self.lock:
            return [m[1] for m in self.status if m[0] == device_id]

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def observer(stack: Stack) -> Iterator[Observer]:
    """An MQTT 5 subscriber with its own credentials and a persistent session (so that it
    misses nothing across a broker restart)."""
    username, password = f"sim-observer-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(16)
    with stack.broker_admin() as admin:
        # BrokerAdmin.ensure_role fails when the role exists with these ACLs already
        # (addRoleACL answers "ACL with this topic already exists"): create it once.
        admin.execute(
            {
                "command": "createRole",
                "rolename": OBSERVER_ROLE,
                "acls": [
                    {"acltype": "subscribePattern", "topic": f"{TOPIC_PREFIX}/#", "allow": True},
                    {"acltype": "publishClientReceive", "topic": f"{TOPIC_PREFIX}/#", "allow": True},
                    {"acltype": "publishClientSend", "topic": f"{TOPIC_PREFIX}/+/commands", "allow": True},
                ],
            },
            allow_errors=("Role already exists",),
        )
        admin.ensure_client(username, password, OBSERVER_ROLE)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)
    client.reconnect_delay_set(0.2, 1)
    obs = Observer(client)

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if not rc.is_failure:
            c.subscribe([(f"{TOPIC_PREFIX}/+/telemetry", 1), (f"{TOPIC_PREFIX}/+/status", 1)])
            obs.connected.set()

    client.on_connect = on_connect
    client.on_message = obs.on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", stack.ports.mqtt, keepalive=10, clean_start=False, properties=props)
    client.loop_start()
    assert obs.connected.wait(10), "observer could not connect"
    time.sleep(0.3)  # SUBACK
    try:
        yield obs
    finally:
        # End the persistent session so the broker stops queueing for it.
        end = Properties(PacketTypes.DISCONNECT)
        end.SessionExpiryInterval = 0
        client.disconnect(properties=end)
        client.loop_stop()


@dataclass
class SimProcess:
    proc: subprocess.Popen[str]

    def wait(self, timeout: float) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)


@pytest.fixture
def simulator(stack: Stack) -> Iterator[Callable[..., SimProcess]]:
    """Start `python -m devices.simulator run ...` against the test broker."""
    started: list[SimProcess] = []

    def start(*args: str) -> SimProcess:
        env = {**os.environ, "RPM_MQTT_HOST": "127.0.0.1", "RPM_MQTT_PORT": str(stack.ports.mqtt)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "devices.simulator", "run", "--no-progress", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        sim = SimProcess(proc)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        if sim.proc.poll() is None:
            sim.proc.kill()
            sim.proc.communicate()
