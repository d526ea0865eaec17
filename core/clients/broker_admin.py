"""MQTT broker administration through Mosquitto's dynamic-security plugin.

Credentials and ACLs change at run time, without restarting the broker: a device is
provisioned with its own client and a role that lets it write only its own topics
(`rpm/v1/devices/{id}/#`) and read only its own commands topic; a revoked device is
disabled, which also disconnects it at once.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from core.wire import TOPIC_PREFIX

CONTROL_TOPIC: Final = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC: Final = "$CONTROL/dynamic-security/v1/response"
INGEST_ROLE: Final = "rpm-ingest"


class BrokerAdminError(RuntimeError):
    """The broker refused an administrative command or could not be reached."""


def device_acls(device_id: str) -> list[dict[str, Any]]:
    base = f"{TOPIC_PREFIX}/{device_id}"
    return [
        {"acltype": "publishClientSend", "topic": f"{base}/telemetry", "allow": True},
        {"acltype": "publishClientSend", "topic": f"{base}/status", "allow": True},
        {"acltype": "subscribePattern", "topic": f"{base}/commands", "allow": True},
        {"acltype": "publishClientReceive", "topic": f"{base}/commands", "allow": True},
    ]


INGEST_ACLS: Final[list[dict[str, Any]]] = [
    {"acltype": "subscribePattern", "topic": f"{TOPIC_PREFIX}/+/telemetry", "allow": True},
    {"acltype": "subscribePattern", "topic": f"{TOPIC_PREFIX}/+/status", "allow": True},
    {"acltype": "subscribePattern", "topic": f"$share/+/{TOPIC_PREFIX}/+/telemetry", "allow": True},
    {"acltype": "subscribePattern", "topic": f"$share/+/{TOPIC_PREFIX}/+/status", "allow": True},
    {"acltype": "publishClientReceive", "topic": f"{TOPIC_PREFIX}/#", "allow": True},
    {"acltype": "publishClientSend", "topic": f"{TOPIC_PREFIX}/+/commands", "allow": True},
]


class BrokerAdmin:
    """A short-lived admin connection; use as a context manager."""

    def __init__(self, host: str, port: int, username: str, password: str, timeout: float = 10.0) -> None:
        self._host, self._port, self._timeout = host, port, timeout
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"rpm-admin-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        self._client.username_pw_set(username, password)
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._connect_rc: ReasonCode | None = None
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self._connect_rc = rc
        self._connected.set()
        if not rc.is_failure:
            client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_subscribe(self, *_args: Any) -> None:
        self._subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        for response in body.get("responses", []):
            corr = response.get("correlationData")
            with self._lock:
                waiter = self._waiting.get(corr)
            if waiter is not None:
                waiter[1].append(response)
                waiter[0].set()

    def __enter__(self) -> BrokerAdmin:
        try:
            self._client.connect(self._host, self._port, keepalive=30)
        except OSError as exc:
            raise BrokerAdminError(f"MQTT broker {self._host}:{self._port} unreachable: {exc}") from exc
        self._client.loop_start()
        if not self._connected.wait(self._timeout):
            self.close()
            raise BrokerAdminError("MQTT broker did not answer CONNECT")
        if self._connect_rc is not None and self._connect_rc.is_failure:
            self.close()
            raise BrokerAdminError(f"MQTT admin login refused: {self._connect_rc}")
        if not self._subscribed.wait(self._timeout):
            self.close()
            raise BrokerAdminError("MQTT broker did not confirm the dynamic-security subscription")
        return self

    def __exit__(self, *_exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def execute(self, command: dict[str, Any], *, allow_errors: Iterable[str] = ()) -> dict[str, Any]:
        """Run one dynamic-security command and return its response."""
        corr = uuid.uuid4().hex
        done = threading.Event()
        box: list[dict[str, Any]] = []
        with self._lock:
            self._waiting[corr] = (done, box)
        try:
            info = self._client.publish(
                CONTROL_TOPIC, json.dumps({"commands": [{**command, "correlationData": corr}]}), qos=1
            )
            info.wait_for_publish(self._timeout)
            if not done.wait(self._timeout):
                raise BrokerAdminError(f"no answer to {command['command']}")
        finally:
            with self._lock:
                self._waiting.pop(corr, None)
        response = box[0]
        error = response.get("error")
        if error and error not in set(allow_errors):
            raise BrokerAdminError(f"{command['command']} refused: {error}")
        return response

    # --- high-level operations ---------------------------------------------------------------
    def ensure_role(self, rolename: str, acls: list[dict[str, Any]]) -> None:
        """Create the role, or add to an existing one the ACLs it lacks (idempotent)."""
        created = self.execute(
            {"command": "createRole", "rolename": rolename, "acls": acls}, allow_errors=("Role already exists",)
        )
        if not created.get("error"):
            return
        role = self.execute({"command": "getRole", "rolename": rolename})["data"]["role"]
        have = {(a["acltype"], a["topic"]) for a in role.get("acls", [])}
        for acl in acls:
            if (acl["acltype"], acl["topic"]) not in have:
                self.execute({"command": "addRoleACL", "rolename": rolename, **acl})

    def ensure_client(self, username: str, password: str, rolename: str) -> None:
        """Create the client, or bring an existing one to this password and role, enabled."""
        created = self.execute(
            {
                "command": "createClient",
                "username": username,
                "password": password,
                "roles": [{"rolename": rolename}],
            },
            allow_errors=("Client already exists",),
        )
        if not created.get("error"):
            return
        self.execute({"command": "setClientPassword", "username": username, "password": password})
        client = self.execute({"command": "getClient", "username": username})["data"]["client"]
        if rolename not in {r["rolename"] for r in client.get("roles", [])}:
            self.execute({"command": "addClientRole", "username": username, "rolename": rolename})
        self.execute({"command": "enableClient", "username": username})

    def provision_device(self, device_id: str, password: str) -> None:
        rolename = f"device:{device_id}"
        self.ensure_role(rolename, device_acls(device_id))
        self.ensure_client(device_id, password, rolename)

    def revoke_device(self, device_id: str) -> None:
        """Disable the device's client; the broker disconnects it and refuses new logins."""
        self.execute({"command": "disableClient", "username": device_id}, allow_errors=("Client not found",))

    def ensure_ingest_client(self, username: str, password: str) -> None:
        self.ensure_role(INGEST_ROLE, INGEST_ACLS)
        self.ensure_client(username, password, INGEST_ROLE)
