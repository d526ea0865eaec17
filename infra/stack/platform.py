"""The platform's own processes on the local stack: ingest, streams, alerts, the API, the
device simulator and the watchdog, each started with the stack's RPM_ environment and
waited for until its metrics or health endpoint says it is up."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from infra.stack.probes import http_status, metric_value
from infra.stack.services import Services
from infra.stack.supervisor import StackError, tail


class Platform(Services):
    """Start each platform process (a second start of a running one does nothing)."""

    def _python(
        self, name: str, module: str, *args: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        env = {**self.env(module), **(extra_env or {})}  # the module names the process (ingest-2 runs ingest)
        marker = f"-m {module}"
        return self._spawn(name, [sys.executable, "-m", module, *args], env=env, marker=marker)

    def _start_with_metrics(self, name: str, port: int, timeout: float) -> None:
        """Start a process that says it is up in its metrics (rpm_<name>_up) on its own port."""
        self._require_free(name, port)
        proc = self._python(name, name)
        self._wait(name, proc, lambda: metric_value(port, f"rpm_{name}_up") == 1.0, timeout)
        self._say(f"  {name:<10} ready (metrics http://127.0.0.1:{port}/metrics)")

    def start_ingest(self) -> None:
        if self.pid("ingest"):
            return
        self._start_with_metrics("ingest", self.ports.ingest_metrics, 30)

    def start_streams(self) -> None:
        if self.pid("streams"):
            return
        self._start_with_metrics("streams", self.ports.streams_metrics, 120)

    def start_alerts(self) -> None:
        if self.pid("alerts"):
            return
        self.start_smtp()  # where the alert service's e-mail goes
        self._start_with_metrics("alerts", self.ports.alerts_metrics, 60)

    def start_api(self) -> None:
        if self.pid("api"):
            return
        self._require_free("api", self.ports.api)
        self._require_free("api", self.ports.api_metrics)
        proc = self._python("api", "api")
        self._wait("api", proc, lambda: http_status(self.ports.api, "/healthz") == 200, 30)
        self._say(
            f"  api        ready on http://127.0.0.1:{self.ports.api} "
            f"(metrics http://127.0.0.1:{self.ports.api_metrics}/metrics)"
        )

    def start_simulator(self, credentials: Path, *args: str) -> None:
        if self.pid("simulator"):
            return
        # The watchdog restarts the simulator with the same arguments.
        (self.run_dir / "simulator.args.json").write_text(json.dumps({"credentials": str(credentials), "args": args}))
        proc = self._python(
            "simulator",
            "devices.simulator",
            "run",
            "--credentials",
            str(credentials),
            "--queue-dir",
            str(self.state / "simulator-queue"),
            *args,
        )
        time.sleep(1.0)
        if proc.poll() is not None:
            raise StackError("simulator", f"exited with code {proc.returncode}", tail(self.logs / "simulator.log"))
        self._say("  simulator  publishing for the demo devices")

    def start_watchdog(self) -> None:
        """The watchdog that restarts crashed platform processes (infra/watchdog.py)."""
        if self.pid("watchdog"):
            return
        proc = self._spawn(
            "watchdog", [sys.executable, "-m", "infra.watchdog", str(self.state)], marker="-m infra.watchdog"
        )
        time.sleep(0.5)
        if proc.poll() is not None:
            raise StackError("watchdog", f"exited with code {proc.returncode}", tail(self.logs / "watchdog.log"))
        self._say("  watchdog   restarts a crashed platform process (restarts in make status)")
