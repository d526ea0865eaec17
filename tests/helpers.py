"""Test helpers: provisioning patients and devices through the real path, and an MQTT 5
device client that reports each PUBACK's reason code."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from psycopg import AsyncConnection

from core.clients.provisioning import DeviceCredentials, provision_device
from core.wire import telemetry_topic
from infra.stack import Stack


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_patient(
    db: psycopg.Connection,
    patient_id: str | None = None,
    *,
    consent: bool = True,
    enrolled_at: datetime | None = None,
) -> str:
    pid = patient_id or unique("pt")
    enrolled = enrolled_at or datetime.now(UTC) - timedelta(days=30)
    db.execute(
        "INSERT INTO patients (id, display_name, enrolled_at) VALUES (%s, %s, %s)", (pid, f"Test {pid}", enrolled)
    )
    if consent:
        db.execute("INSERT INTO consents (patient_id, granted_at) VALUES (%s, %s)", (pid, enrolled))
    return pid


def provision(
    stack: Stack, patient_id: str, device_class: str = "wearable", device_id: str | None = None
) -> DeviceCredentials:
    """Provision a device through the platform's own library call (database + broker)."""

    async def run() -> DeviceCredentials:
        async with await AsyncConnection.connect(stack.admin_db_url) as conn, conn.transaction():
            with stack.broker_admin() as admin:
                return await provision_device(
                    conn,
                    admin,
                    device_id=device_id or unique("dev"),
                    patient_id=patient_id,
                    device_class=device_class,
                    valid_from=datetime.now(UTC) - timedelta(days=30),
                )

    return asyncio.run(run())


def payload(device_id: str, seq: int, readings: list[dict[str, Any]], **extra: Any) -> bytes:
    body = {
        "schema": 1,
        "device_id": device_id,
        "seq": seq,
        "sent_at": datetime.now(UTC).isoformat(),
        "readings": readings,
        **extra,
    }
    return json.dumps(body).encode()


def reading(metric: str, value: Any, unit: str, ts: datetime, **extra: Any) -> dict[str, Any]:
    return {"metric": metric, "value": value, "unit": unit, "ts": ts.isoformat(), **extra}


@dataclass
class Device:
    """A real MQTT 5 device connection; `publish` waits for the PUBACK and returns its code."""

    stack: Stack
    username: str
    password: str
    client: mqtt.Client = field(init=False)
    acks: dict[int, ReasonCode] = field(default_factory=dict)
    connect_rc: ReasonCode | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique(self.username), protocol=mqtt.MQTTv5)
        self.client.username_pw_set(self.username, self.password)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        with self._cond:
            self.connect_rc = rc
            self._cond.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        with self._cond:
            self.acks[mid] = rc
            self._cond.notify_all()

    def connect(self, timeout: float = 10) -> ReasonCode:
        self.client.connect("127.0.0.1", self.stack.ports.mqtt)
        self.client.loop_start()
        with self._cond:
            self._cond.wait_for(lambda: self.connect_rc is not None, timeout)
        assert self.connect_rc is not None, "no CONNACK"
        return self.connect_rc

    def publish(self, topic: str, body: bytes, timeout: float = 30) -> ReasonCode:
        info = self.client.publish(topic, body, qos=1)
        with self._cond:
            ok = self._cond.wait_for(lambda: info.mid in self.acks, timeout)
        assert ok, f"no PUBACK for mid {info.mid}"
        return self.acks[info.mid]

    def send(self, seq: int, readings: list[dict[str, Any]]) -> ReasonCode:
        return self.publish(telemetry_topic(self.username), payload(self.username, seq, readings))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.25) -> Any:
    """Poll until the predicate returns something truthy; the last value on timeout."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def count_rows(db: psycopg.Connection, patient_id: str, table: str = "observations") -> int:
    row = db.execute(f"SELECT count(*) FROM {table} WHERE patient_id = %s", (patient_id,)).fetchone()  # noqa: S608
    return int(row[0]) if row else 0
