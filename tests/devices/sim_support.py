"""Helpers of the simulator tests that are plain functions (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from devices.simulator.config import Roster
from devices.simulator.provisioning import plan_population
from infra.stack import Stack


def dry_run(
    tmp_path: Path,
    name: str,
    *,
    patients: int = 10,
    cohorts: dict[str, float] | None = None,
    seed: int = 1,
    duration: float = 60.0,
    speed: float = 60.0,
    interval: float = 5.0,
    scenarios: tuple[str, ...] = (),
    start: str = "2025-03-01T00:00:00Z",
    workers: int = 1,
    roster: Roster | None = None,
    rate: float | None = None,
) -> Path:
    """Generate a ground truth without a broker (in process); returns its path."""
    from devices.simulator.config import RunOptions, parse_start
    from devices.simulator.runner import run_worker

    roster = roster or plan_population(patients, cohorts or {"healthy": 1.0}, seed)
    gt = tmp_path / f"{name}.jsonl"
    now = time.time()
    opts = RunOptions(
        seed=seed,
        duration=duration,
        speed=speed,
        interval=interval,
        scenarios=list(scenarios),
        rate=rate,
        start=parse_start(start, now, speed, duration),
        wall0=now,
        ground_truth=gt,
        dry_run=True,
        workers=workers,
    )
    for w in range(workers):
        asyncio.run(run_worker(opts, roster, w, workers))
    return gt


def gt_messages(path: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """device -> seq -> payload fields (as published) from a ground-truth log."""
    from devices.simulator.groundtruth import read_records

    out: dict[str, dict[int, dict[str, Any]]] = {}
    for rec in read_records(path):
        if rec["kind"] == "msg":
            body = {k: v for k, v in rec.items() if k not in ("kind", "patient_id", "fault")}
            out.setdefault(rec["device_id"], {})[int(rec["seq"])] = body
    return out


@dataclass
class Delivery:
    expected: int
    delivered: int
    duplicates: int
    missing: list[tuple[str, int]]
    out_of_order: list[str]


def check_delivery(gt_path: Path, received: list[tuple[str, bytes, bool]]) -> Delivery:
    """Compare what the broker delivered to the ground truth: every message, in seq order
    of first arrival per device; a message seen twice must be byte-for-byte the same."""
    expected = gt_messages(gt_path)
    first: dict[str, list[int]] = {}
    seen: dict[tuple[str, int], bytes] = {}
    duplicates = 0
    for device_id, raw, _dup in received:
        if device_id not in expected:
            continue
        body = msgspec.json.decode(raw)
        key = (device_id, int(body["seq"]))
        if key in seen:
            assert seen[key] == raw, f"{key} delivered twice with different content"
            duplicates += 1
            continue
        seen[key] = raw
        assert body == expected[device_id].get(key[1]), f"{key} differs from the ground truth"
        first.setdefault(device_id, []).append(key[1])
    missing = [(d, s) for d, seqs in expected.items() for s in seqs if (d, s) not in seen]
    out_of_order = [d for d, seqs in first.items() if seqs != sorted(seqs)]
    return Delivery(sum(len(v) for v in expected.values()), len(seen), duplicates, sorted(missing), out_of_order)


async def _publish_as(port: int, device_id: str, password: str, topic: str, payload: bytes) -> int:
    from core.clients import mqtt5 as mqtt

    loop = asyncio.get_running_loop()
    events: asyncio.Queue[tuple[str, int]] = asyncio.Queue()

    class Listener:
        def on_connack(self, reason: int, props: dict[int, int | bytes]) -> None:
            events.put_nowait(("connack", reason))

        def on_puback(self, packet_id: int, reason: int) -> None:
            events.put_nowait(("puback", reason))

        def on_suback(self, packet_id: int, reasons: bytes) -> None: ...
        def on_message(self, topic: str, payload: bytes) -> None: ...
        def on_server_disconnect(self, reason: int) -> None: ...

        def on_lost(self, exc: Exception | None) -> None:
            events.put_nowait(("lost", -1))

    _t, conn = await loop.create_connection(lambda: mqtt.MqttConnection(Listener()), "127.0.0.1", port)
    try:
        conn.write(mqtt.encode_connect(device_id, device_id, password))
        kind, reason = await asyncio.wait_for(events.get(), 5)
        assert (kind, reason) == ("connack", 0), f"login refused: {kind} {reason:#x}"
        conn.write(mqtt.encode_publish(mqtt.mqtt_string(topic), payload, 7))
        kind, reason = await asyncio.wait_for(events.get(), 5)
        assert kind == "puback"
        return reason
    finally:
        conn.write(mqtt.encode_disconnect())
        conn.close()


def publish_as(port: int, device_id: str, password: str, topic: str, payload: bytes) -> int:
    """Log in as a device, publish one QoS 1 message, return the PUBACK reason code."""
    return asyncio.run(_publish_as(port, device_id, password, topic, payload))


def stop_broker(stack: Stack) -> None:
    """Stop the test stack's Mosquitto (its persistence and dynsec file stay in the state dir).

    Work-around: the stack's health check on start calls BrokerAdmin.ensure_ingest_client,
    which is not idempotent in core/clients/broker_admin.py (addRoleACL answers "ACL with this
    topic already exists", addClientRole "already in this role"), so a restarted broker is
    never reported healthy. Taking the ingest role's ACLs and its assignment away first
    lets the start add them back exactly as before. (deleteRole instead crashed Mosquitto
    2.0.11 here while clients were connected.)
    """
    from core.clients.broker_admin import INGEST_ACLS, INGEST_ROLE

    with stack.broker_admin() as admin:
        admin.execute(
            {"command": "removeClientRole", "username": "rpm-ingest", "rolename": INGEST_ROLE},
            allow_errors=("Client not found", "Role not found"),
        )
        for acl in INGEST_ACLS:
            admin.execute(
                {"command": "removeRoleACL", "rolename": INGEST_ROLE, "acltype": acl["acltype"], "topic": acl["topic"]},
                allow_errors=("ACL not found", "Role not found"),
            )
    stack.stop(["mosquitto"])


def start_broker(stack: Stack) -> None:
    stack.start(["mosquitto"])
