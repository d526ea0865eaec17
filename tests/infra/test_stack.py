"""The stack runner: failures name the component and why; stop ends exactly what it started."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.stack import Ports, Stack, StackError


@pytest.fixture
def fresh_stack() -> Iterator[Stack]:
    state = Path(tempfile.mkdtemp(prefix="rpm-stacktest-"))
    state.chmod(0o755)
    stack = Stack(state, Ports.free(), quiet=True)
    try:
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)


def test_a_taken_port_is_reported_with_the_component(fresh_stack: Stack) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", fresh_stack.ports.mqtt))
        squatter.listen()
        with pytest.raises(StackError) as err:
            fresh_stack.start_mosquitto()
    assert err.value.component == "mosquitto"
    assert f"port {fresh_stack.ports.mqtt} is taken" in err.value.reason
    assert fresh_stack.pid("mosquitto") is None


def test_a_crash_while_starting_shows_the_log_tail(fresh_stack: Stack) -> None:
    proc = fresh_stack._python("broken", "rpm_no_such_module")
    with pytest.raises(StackError) as err:
        fresh_stack._wait("broken", proc, lambda: False, timeout=20)
    assert err.value.component == "broken"
    assert "exited with code 1" in err.value.reason
    assert "No module named rpm_no_such_module" in err.value.log_tail


def test_stop_ends_exactly_the_processes_it_started(fresh_stack: Stack) -> None:
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        fresh_stack.start(["mosquitto", "kafka", "postgres"])
        pids = {name: fresh_stack.pid(name) for name in ("mosquitto", "kafka", "postgres")}
        assert all(pids.values())
        assert sorted(fresh_stack.stop()) == ["kafka", "mosquitto", "postgres"]
        for name, pid in pids.items():
            assert pid is not None
            assert not Path(f"/proc/{pid}").exists() or fresh_stack.pid(name) is None
            assert not (fresh_stack.run_dir / f"{name}.pid").exists()
        assert bystander.poll() is None, "a process the stack did not start was touched"
        # Nothing listens on the stack's ports any more.
        for port in (fresh_stack.ports.mqtt, fresh_stack.ports.kafka, fresh_stack.ports.postgres):
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", port)) != 0
    finally:
        bystander.terminate()
        bystander.wait()


def test_a_second_start_reuses_the_running_services(fresh_stack: Stack) -> None:
    fresh_stack.start(["mosquitto", "postgres"])
    first = fresh_stack.pid("mosquitto"), fresh_stack.pid("postgres")
    again = Stack(fresh_stack.state, quiet=True)  # a second `make run` reads ports.json
    again.start(["mosquitto", "postgres"])
    assert (again.pid("mosquitto"), again.pid("postgres")) == first
    assert os.path.exists(fresh_stack.state / "secrets.json")


@pytest.mark.skipif(os.geteuid() != 0, reason="servers drop to their own users only when started by root")
def test_a_state_dir_the_server_user_cannot_reach_is_reported() -> None:
    hidden = Path(tempfile.mkdtemp(prefix="rpm-hidden-"))  # mode 0700: 'postgres' cannot pass
    stack = Stack(hidden / "state", Ports.free(), quiet=True)
    try:
        with pytest.raises(StackError) as err:
            stack.start_postgres()
        assert err.value.component == "postgres"
        assert "not reachable by the unprivileged user 'postgres'" in err.value.reason
    finally:
        stack.stop()
        shutil.rmtree(hidden, ignore_errors=True)


def test_the_broker_restarts_with_its_credentials(fresh_stack: Stack) -> None:
    fresh_stack.start(["mosquitto"])
    with fresh_stack.broker_admin() as admin:
        admin.provision_device("restart-dev", "first-secret")
        admin.provision_device("restart-dev", "second-secret")  # re-issue: idempotent
    fresh_stack.stop(["mosquitto"])
    fresh_stack.start(["mosquitto"])  # health check re-ensures the bridge's identity
    from tests.helpers import Device

    device = Device(fresh_stack, "restart-dev", "second-secret")
    assert not device.connect().is_failure
    device.close()
    stale = Device(fresh_stack, "restart-dev", "first-secret")
    assert stale.connect().is_failure
    stale.close()
