"""The stack's watchdog: restarts a platform process that ended without being stopped.

`python -m infra.watchdog STATE_DIR` runs beside the stack (started last by `rpm stack up`,
stopped first by `rpm stack down`). Once a second it looks at each platform component
(ingest, streams, alerts, api, simulator): one whose pid file is there but whose process is gone
crashed (an orderly stop removes the pid file). It is started again after a backoff that
doubles with each crash in a row (1 s, 2 s, 4 s ... at most 60 s) and resets once the
component has stayed up for a minute. Every restart is recorded in `run/restarts.json`,
which `make status` shows.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from infra.stack import Stack, StackError, tail

WATCHED: Final = ("ingest", "streams", "alerts", "api", "simulator")
BACKOFF_FIRST_S: Final = 1.0
BACKOFF_MAX_S: Final = 60.0
STABLE_AFTER_S: Final = 60.0
POLL_S: Final = 1.0
_EXIT_LINE = re.compile(r"exiting with code (\d+)")


@dataclass
class Restarts:
    """What `make status` shows of one component's restarts."""

    count: int = 0
    last_at: float = 0.0
    last_exit: str = ""
    in_a_row: int = 0
    next_try_at: float = 0.0
    last_error: str = ""


def restarts_path(stack: Stack) -> Path:
    return stack.run_dir / "restarts.json"


def read_restarts(stack: Stack) -> dict[str, Restarts]:
    try:
        data: dict[str, dict[str, Any]] = json.loads(restarts_path(stack).read_text())
    except (OSError, ValueError):
        return {}
    return {name: Restarts(**fields) for name, fields in data.items()}


def backoff_s(in_a_row: int) -> float:
    """Delay before restart number `in_a_row` of an unbroken series of crashes (1-based)."""
    return float(min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, in_a_row - 1)))


class Watchdog:
    def __init__(self, stack: Stack, *, say: bool = True) -> None:
        self.stack = stack
        self.restarts = read_restarts(stack)
        self.started_at: dict[str, float] = {}
        self.say = say
        self._simulator_args: list[str] | None = None

    def _save(self) -> None:
        path = restarts_path(self.stack)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({n: asdict(r) for n, r in self.restarts.items()}))
        tmp.replace(path)

    def _log(self, text: str) -> None:
        if self.say:
            print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {text}", flush=True)

    def _exit_status(self, name: str) -> str:
        proc = self.stack._children.get(name)
        if proc is not None and proc.poll() is not None:
            code = proc.returncode
            return f"signal {-code}" if code < 0 else f"exit {code}"
        found = _EXIT_LINE.findall(tail(self.stack.logs / f"{name}.log", 40))
        return f"exit {found[-1]}" if found else "ended (exit status unknown)"

    def check_once(self) -> None:
        now = time.time()
        for name in WATCHED:
            pidfile = self.stack.run_dir / f"{name}.pid"
            if not pidfile.exists():
                continue
            if self.stack.pid(name) is not None:
                record = self.restarts.get(name)
                since = self.started_at.setdefault(name, now)
                if record is not None and record.in_a_row and now - since >= STABLE_AFTER_S:
                    record.in_a_row = 0
                    self._save()
                continue
            record = self.restarts.setdefault(name, Restarts())
            if record.next_try_at == 0.0:
                # Noticed now: record the crash, wait out the backoff before starting it.
                record.last_exit = self._exit_status(name)
                record.in_a_row += 1
                record.next_try_at = now + backoff_s(record.in_a_row)
                self._log(f"{name} ended ({record.last_exit}); restart in {backoff_s(record.in_a_row):g} s")
                self._save()
            if now < record.next_try_at:
                continue
            self.stack._reap(name)
            try:
                self._start(name)
            except StackError as exc:
                record.last_error = str(exc)[:300]
                record.in_a_row += 1
                record.next_try_at = time.time() + backoff_s(record.in_a_row)
                self._log(f"{name} restart failed: {exc}; next try in {backoff_s(record.in_a_row):g} s")
                self._save()
                continue
            record.count += 1
            record.last_at = time.time()
            record.next_try_at = 0.0
            record.last_error = ""
            self.started_at[name] = time.time()
            self._log(f"{name} restarted (restart number {record.count})")
            self._save()

    def _start(self, name: str) -> None:
        if name == "simulator":
            args = json.loads((self.stack.run_dir / "simulator.args.json").read_text())
            self.stack._pidfile(name).unlink(missing_ok=True)
            self.stack.start_simulator(Path(args["credentials"]), *args["args"])
            return
        self.stack._pidfile(name).unlink(missing_ok=True)
        getattr(self.stack, f"start_{name}")()

    def run(self) -> None:
        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self._log(f"watchdog up for {', '.join(WATCHED)} in {self.stack.state}")
        while not stopping:
            try:
                self.check_once()
            except Exception as exc:  # the watchdog outlives any one bad check
                self._log(f"check failed: {type(exc).__name__}: {exc}")
            time.sleep(POLL_S)
        self._log("watchdog stopped")


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m infra.watchdog STATE_DIR")
    Watchdog(Stack(Path(sys.argv[1]), quiet=True)).run()


if __name__ == "__main__":
    main()
