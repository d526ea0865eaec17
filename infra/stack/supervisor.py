"""Process supervision of the local stack: start a component with its log and pid file, wait
for its health, and stop exactly the processes we started (pid file checked against the
process's command line)."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from infra.stack.config import ROOT, Ports, StackConfig
from infra.stack.probes import port_is_free


class StackError(RuntimeError):
    """A component could not be started or checked; the message says which and why."""

    def __init__(self, component: str, reason: str, log_tail: str = "") -> None:
        self.component, self.reason, self.log_tail = component, reason, log_tail
        text = f"{component}: {reason}"
        if log_tail:
            text += f"\n--- last lines of the {component} log ---\n{log_tail}"
        super().__init__(text)


def tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return "(no log written)"
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 16384))
        text = fh.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def unprivileged_user(name: str) -> pwd.struct_passwd | None:
    """When we run as root, servers run as their Debian system user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError as exc:
        raise StackError(name, f"system user {name!r} missing; run infra/setup.sh") from exc


def reachable_by(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether every directory above `path` lets `user` pass (search permission)."""
    import grp
    import stat

    groups = {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem} | {user.pw_gid}
    for parent in path.parents:
        st = parent.stat()
        if st.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def chown_tree(path: Path, user: pwd.struct_passwd | None) -> None:
    if user is None:
        return
    for p in [path, *path.rglob("*")]:
        os.chown(p, user.pw_uid, user.pw_gid)


class Supervisor(StackConfig):
    """The processes one stack started: pid files, logs, health waits, stop and kill."""

    def __init__(self, state: Path, ports: Ports | None = None, *, quiet: bool = False) -> None:
        super().__init__(state, ports, quiet=quiet)
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def _pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        """The pid of a component we started, if that process is still ours and alive."""
        path = self._pidfile(name)
        if not path.exists():
            return None
        try:
            info = json.loads(path.read_text())
            pid, marker = int(info["pid"]), str(info["marker"])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError, KeyError):
            return None
        if marker not in cmdline or stat.split(") ", 1)[1].startswith("Z"):
            return None
        return pid

    def _spawn(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        user: pwd.struct_passwd | None = None,
        marker: str | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        log_path = self.logs / f"{name}.log"
        log = log_path.open("ab")
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {name} ===\n".encode())
        log.flush()
        full_env = {**os.environ, **(env or {})}
        try:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=cwd or ROOT,
                start_new_session=True,
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
            )
        except FileNotFoundError as exc:
            raise StackError(name, f"binary not found: {argv[0]} (run infra/setup.sh)") from exc
        finally:
            log.close()
        self._pidfile(name).write_text(json.dumps({"pid": proc.pid, "marker": marker or argv[0]}))
        self._children[name] = proc
        return proc

    def _reap(self, name: str) -> None:
        # Collect the exit status of a child we started in this process (no zombie, and no
        # "subprocess still running" warning when the Popen object goes away).
        proc = self._children.pop(name, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def _wait(self, name: str, proc: subprocess.Popen[bytes], check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(
                    name, f"exited with code {proc.returncode} while starting", tail(self.logs / f"{name}.log")
                )
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.2)
        raise StackError(name, f"not healthy after {timeout:.0f} s", tail(self.logs / f"{name}.log"))

    def _require_free(self, name: str, port: int) -> None:
        # A restarted broker may hold its port for a moment: wait briefly before giving up.
        deadline = time.monotonic() + 5
        while not port_is_free(port):
            if time.monotonic() > deadline:
                raise StackError(name, f"port {port} is taken by another process")
            time.sleep(0.2)

    def _require_reachable(self, name: str, user: pwd.struct_passwd | None) -> None:
        if user is not None and not reachable_by(self.state, user):
            raise StackError(
                name,
                f"the state directory {self.state} is not reachable by the unprivileged user '{name}' "
                "(a parent directory lacks search permission); set RPM_STATE_DIR to a path under /var/lib or /tmp",
            )

    def stop(self, components: Iterable[str] | None = None) -> list[str]:
        """Stop the components we started (platform first, then services); returns their names."""
        order = [
            "watchdog",
            "simulator",
            "prometheus",
            "api",
            "alerts",
            "streams",
            "ingest",
            "smtp",
            "kafka",
            "mosquitto",
            "postgres",
        ]
        wanted = list(components) if components is not None else order
        stopped = []
        for name in [n for n in order if n in wanted]:
            pid = self.pid(name)
            if pid is None:
                self._pidfile(name).unlink(missing_ok=True)
                continue
            # PostgreSQL: SIGINT is its fast shutdown; others stop on SIGTERM.
            sig = signal.SIGINT if name == "postgres" else signal.SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + 20
            while self.pid(name) is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.pid(name) is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)
            self._reap(name)
            self._pidfile(name).unlink(missing_ok=True)
            stopped.append(name)
        return stopped

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send a signal to one component we started (fault tests)."""
        pid = self.pid(name)
        if pid is None:
            raise StackError(name, "not running")
        os.kill(pid, sig)
        self._reap(name)
        deadline = time.monotonic() + 10
        while self.pid(name) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        self._pidfile(name).unlink(missing_ok=True)
