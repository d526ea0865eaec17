"""The simulator against the real broker of the test stack: devices provisioned through
the platform, delivery checked by an independent subscriber and against the ground truth."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from sim_support import check_delivery, gt_messages, publish_as, start_broker, stop_broker

from core.wire import commands_topic, telemetry_topic
from devices.simulator.config import Roster, write_credentials
from devices.simulator.groundtruth import read_records
from devices.simulator.provisioning import plan_population
from infra.stack import Stack

Provision = Callable[..., tuple[Roster, Path]]


def records(path: Path, kind: str) -> list[dict[str, Any]]:
    return [r for r in read_records(path) if r["kind"] == kind]


def test_devices_publish_with_status_and_will_and_stop_promptly_on_sigterm(
    provisioned: Provision, observer: Any, simulator: Any, tmp_path: Path
) -> None:
    roster, creds = provisioned(4)
    gt = tmp_path / "gt.jsonl"
    sim = simulator(
        "--credentials",
        str(creds),
        "--rate",
        "80",
        "--ground-truth",
        str(gt),
        "--queue-dir",
        str(tmp_path / "q"),
        "--scenario",
        "fault:kind=foreign_topic,start=2s",
        "--scenario",
        "fault:kind=oversize,start=2s",
    )
    ids = [d.device_id for d in roster.devices]
    observer.wait_for(lambda: all(len(observer.messages(d)) >= 10 for d in ids), 30, "10 messages per device")
    assert all(observer.statuses(d)[-1] == b"online" for d in ids)
    # Both injected faults (due 2 s into the run) must have had the broker's answer.
    observer.wait_for(lambda: gt.exists() and len(records(gt, "fault_answer")) >= 2, 30, "fault answers")
    sim.terminate()
    code, out, err = sim.wait(15)  # promptly: a simulator still running after 15 s fails here
    assert code == 0, err
    assert "acknowledged" in out
    observer.wait_for(lambda: all(observer.statuses(d)[-1] == b"offline" for d in ids), 10, "status offline")
    time.sleep(0.5)
    report = check_delivery(gt, observer.messages())
    assert report.missing == []
    assert report.out_of_order == []
    assert report.delivered == report.expected >= 40
    answers = {a["detail"]: a for a in records(gt, "fault_answer")}
    assert answers["foreign_topic"]["puback"] == 0x87  # not authorized
    assert answers["oversize"]["refused"] is True
    (summary,) = records(gt, "summary")
    assert all(d["pending"] == 0 for d in summary["devices"].values())


def test_publishing_on_another_devices_topic_is_refused(provisioned: Provision, stack: Stack) -> None:
    roster, _ = provisioned(2)
    a, b = roster.devices
    body = b'{"schema":1}'
    assert publish_as(stack.ports.mqtt, a.device_id, a.password, telemetry_topic(b.device_id), body) >= 0x80
    assert publish_as(stack.ports.mqtt, a.device_id, a.password, telemetry_topic(a.device_id), body) < 0x80


def test_a_device_that_is_not_provisioned_gets_a_clear_error(simulator: Any, tmp_path: Path) -> None:
    creds = tmp_path / "creds.json"
    plan = plan_population(2, {"healthy": 1.0}, 1, "never-provisioned", ("wearable",))
    write_credentials(creds, plan)
    code, _out, err = simulator(
        "--credentials", str(creds), "--duration", "5", "--connect-timeout", "5", "--queue-dir", str(tmp_path / "q")
    ).wait(30)
    assert code == 2
    assert "refused the login" in err
    assert "provision" in err


def test_an_unreachable_broker_gets_a_clear_error(simulator: Any, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    creds = tmp_path / "creds.json"
    write_credentials(creds, plan_population(1, {"healthy": 1.0}, 1, "x", ("wearable",)))
    code, _out, err = simulator(
        "--credentials",
        str(creds),
        "--mqtt-port",
        str(port),
        "--connect-timeout",
        "2",
        "--queue-dir",
        str(tmp_path / "q"),
    ).wait(30)
    assert code == 2
    assert f"127.0.0.1:{port} unreachable" in err


def test_resend_from_seq_republishes_held_messages(
    provisioned: Provision, observer: Any, simulator: Any, tmp_path: Path
) -> None:
    roster, creds = provisioned(1)
    device = roster.devices[0].device_id
    gt = tmp_path / "gt.jsonl"
    sim = simulator(
        "--credentials", str(creds), "--rate", "40", "--ground-truth", str(gt), "--queue-dir", str(tmp_path / "q")
    )
    observer.wait_for(lambda: len(observer.messages(device)) >= 12, 30, "12 messages")
    observer.client.publish(commands_topic(device), b'{"command":"resend","from_seq":3}', qos=1)

    def seqs() -> list[int]:
        return [msgspec.json.decode(raw)["seq"] for _, raw, _ in observer.messages(device)]

    observer.wait_for(lambda: seqs().count(3) == 2, 15, "seq 3 sent again")
    sim.terminate()
    assert sim.wait(15)[0] == 0
    (resend,) = records(gt, "resend")
    assert resend["from_seq"] == 3
    assert resend["first"] == 3
    assert resend["count"] >= 9
    report = check_delivery(gt, observer.messages())
    assert report.missing == []
    assert report.duplicates >= 9  # the resent ones, identical to the originals


def test_same_seed_same_readings_over_the_broker(
    provisioned: Provision, observer: Any, simulator: Any, tmp_path: Path
) -> None:
    roster, creds = provisioned(3)
    common = (
        "--credentials",
        str(creds),
        "--rate",
        "60",
        "--duration",
        "3",
        "--speed",
        "20",
        "--seed",
        "11",
        "--start",
        "2025-03-01T06:00:00Z",
    )
    assert (
        simulator(*common, "--queue-dir", str(tmp_path / "q1"), "--ground-truth", str(tmp_path / "a.jsonl")).wait(30)[0]
        == 0
    )
    first_run = len(observer.messages())
    assert (
        simulator(*common, "--queue-dir", str(tmp_path / "q2"), "--ground-truth", str(tmp_path / "b.jsonl")).wait(30)[0]
        == 0
    )
    a, b = gt_messages(tmp_path / "a.jsonl"), gt_messages(tmp_path / "b.jsonl")
    for device in (d.device_id for d in roster.devices):
        common_seqs = sorted(set(a[device]) & set(b[device]))
        assert len(common_seqs) >= 10
        assert [a[device][s] for s in common_seqs] == [b[device][s] for s in common_seqs]
    delivered = observer.messages()
    assert first_run >= sum(len(v) for v in a.values())
    assert len(delivered) - first_run >= sum(len(v) for v in b.values())


def test_the_queue_survives_a_restart_of_the_simulator(
    provisioned: Provision, observer: Any, simulator: Any, stack: Stack, tmp_path: Path
) -> None:
    _roster, creds = provisioned(3)
    gt, queue = tmp_path / "gt.jsonl", tmp_path / "q"
    args = ("--credentials", str(creds), "--rate", "60", "--ground-truth", str(gt), "--queue-dir", str(queue))
    sim = simulator(*args)
    observer.wait_for(lambda: len(observer.messages()) >= 15, 30, "first messages")
    stop_broker(stack)
    try:
        time.sleep(2.0)  # messages pile up in the on-disk queue
        sim.terminate()
        assert sim.wait(15)[0] == 0
    finally:
        start_broker(stack)
    (summary,) = records(gt, "summary")
    assert sum(d["pending"] for d in summary["devices"].values()) > 10
    assert simulator(*args, "--duration", "2", "--drain", "15").wait(60)[0] == 0
    time.sleep(1.0)
    report = check_delivery(gt, observer.messages())
    assert report.missing == []
    assert report.out_of_order == []
    for device, seqs in gt_messages(gt).items():
        assert sorted(seqs) == list(range(1, len(seqs) + 1)), f"{device}: seq reused or skipped"
