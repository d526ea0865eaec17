"""Supervision and readiness of the bridge process, against the real stack.

- A processing task that dies ends the process (exit 70, the task named in its log); the
  stack's watchdog starts it again and `make status` counts the restart; no reading is lost.
- A bridge holding messages it cannot finish (its database unreachable while it must look
  up a new device) reports not ready within its stall limit, and ready again once it
  catches up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from infra.stack import Ports, Stack, metric_value, progress_probe
from infra.watchdog import read_restarts
from tests.helpers import Device, count_rows, create_patient, payload, provision, reading, unique, wait_for


def _ready(port: int) -> float | None:
    with contextlib.suppress(Exception):
        return metric_value(port, "rpm_ingest_ready")
    return None


def test_a_dead_task_ends_the_bridge_and_the_watchdog_restarts_it(platform: Stack, db: psycopg.Connection) -> None:
    patient = create_patient(db)
    creds = provision(platform, patient)
    device = Device(platform, creds.username, creds.password)
    device.connect()
    platform.start_watchdog()
    try:
        first_pid = platform.pid("ingest")
        assert first_pid is not None
        base = datetime.now(UTC) - timedelta(minutes=5)
        for seq in range(1, 21):
            assert (
                device.send(seq, [reading("heart_rate", 60 + seq, "/min", base + timedelta(seconds=seq))]).value < 0x80
            )
        # SIGUSR2 (honoured outside production) makes the bridge's batch loop raise, as a bug would.
        os.kill(first_pid, signal.SIGUSR2)
        # Messages published while it is down wait in its MQTT session; QoS 1 PUBACKs still come
        # from the broker.
        for seq in range(21, 41):
            assert (
                device.send(seq, [reading("heart_rate", 60 + seq, "/min", base + timedelta(seconds=seq))]).value < 0x80
            )
        record = wait_for(lambda: (r := read_restarts(platform).get("ingest")) and r.count >= 1 and r, timeout=90)
        assert record, "the watchdog did not restart the bridge"
        assert record.last_exit == "exit 70"
        log = (platform.logs / "ingest.log").read_text(errors="replace")
        assert "supervised task ended unexpectedly" in log
        assert "task=process" in log
        new_pid = platform.pid("ingest")
        assert new_pid is not None
        assert new_pid != first_pid
        assert wait_for(lambda: count_rows(db, patient) == 40, timeout=90), count_rows(db, patient)
        # Every message sent, before and after the crash, stored as sent (with its own seq);
        # (patient, metric, ts) is unique, so counting duplicates could not fail.
        stored = db.execute(
            "SELECT seq, value, ts FROM observations WHERE patient_id = %s ORDER BY seq", (patient,)
        ).fetchall()
        assert stored == [(seq, 60 + seq, base + timedelta(seconds=seq)) for seq in range(1, 41)]
        assert wait_for(lambda: platform.health()["ingest"][0], timeout=30)
    finally:
        device.close()
        platform.stop(["watchdog"])


class PausableProxy:
    """A TCP relay to a real server that can be cut (connections dropped, new ones closed at
    once) and restored: a database outage as the bridge sees it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def pause(self) -> None:
        self.cut.set()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def resume(self) -> None:
        self.cut.clear()

    def close(self) -> None:
        self.pause()
        self.listener.close()


@pytest.mark.slow
def test_a_stalled_bridge_reports_not_ready_and_recovers(platform: Stack, db: psycopg.Connection) -> None:
    proxy = PausableProxy(platform.ports.postgres)
    metrics_port = Ports.free().ingest_metrics
    env = platform.env("ingest")
    env.update(
        RPM_DATABASE_URL=env["RPM_DATABASE_URL"].replace(f":{platform.ports.postgres}/", f":{proxy.port}/"),
        RPM_INGEST_METRICS_PORT=str(metrics_port),
        RPM_MQTT_CLIENT_ID=unique("rpm-ingest-stall"),
        # Leave the shared subscription when stopped: an orphaned session of this one-off bridge
        # would go on taking a share of every later test's messages, never to deliver them.
        RPM_MQTT_LEAVE_ON_STOP="true",
        RPM_INGEST_STALL_AFTER_S="3",
        RPM_REGISTRY_REFRESH_S="3600",
    )
    # This bridge alone takes the messages while the test runs.
    platform.stop(["ingest"])
    proc = platform._python("ingest-stall", "ingest", extra_env=env)
    try:
        assert wait_for(lambda: _ready(metrics_port) == 1.0, timeout=60), "the bridge never became ready"
        proxy.pause()
        # A device provisioned now is unknown to the bridge's registry, which it cannot reload:
        # its messages wait, unacknowledged, and nothing progresses.
        patient = create_patient(db)
        creds = provision(platform, patient)
        device = Device(platform, creds.username, creds.password)
        device.connect()
        # The stopped bridge's persistent session stays in the shared subscription and takes
        # a share of the messages: send several, so this bridge gets some.
        base = datetime.now(UTC) - timedelta(minutes=1)
        for seq in range(1, 7):
            device.client.publish(
                f"rpm/v1/devices/{creds.device_id}/telemetry",
                payload(creds.device_id, seq, [reading("spo2", 96, "%", base + timedelta(seconds=seq))]),
                qos=1,
            )
        assert wait_for(lambda: _ready(metrics_port) == 0.0, timeout=30), "a stalled bridge still says ready"
        ok, detail = progress_probe(metrics_port, "ingest")
        assert not ok
        assert "stalled" in detail
        assert (metric_value(metrics_port, "rpm_ingest_input_waiting") or 0) >= 1
        assert proc.poll() is None  # stalled, not dead
        proxy.resume()
        assert wait_for(lambda: _ready(metrics_port) == 1.0, timeout=60), "did not recover after the outage"
        assert metric_value(metrics_port, "rpm_ingest_input_waiting") == 0
        platform.kill("ingest-stall", signal.SIGTERM)
        platform.start_ingest()
        assert wait_for(lambda: count_rows(db, patient) == 6, timeout=60), count_rows(db, patient)
        device.close()
    finally:
        with contextlib.suppress(Exception):
            platform.kill("ingest-stall", signal.SIGTERM)
        proxy.close()
        platform.start_ingest()
