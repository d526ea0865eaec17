"""Supervised background tasks and the per-message barrier's helpers.

A long-running process keeps its background tasks in a `Supervisor`. A task that ends while
the process is not stopping (it raised, returned or was cancelled by someone else) is a bug
or an outage the process cannot see past: it logs one critical line naming the task and the
error, then ends the process at once with `EXIT_TASK_DIED`, so the stack runner (or systemd,
or Kubernetes) restarts it. Work not yet acknowledged is redelivered to the next process, so
an abrupt end loses nothing; a process that limps on with a dead task loses everything after.
"""

from __future__ import annotations

import asyncio
import os
import sys
import traceback
from collections.abc import Callable, Coroutine
from typing import Any, Final

from core.logging import get_logger

log = get_logger("core.supervision")

EXIT_TASK_DIED: Final = 70  # EX_SOFTWARE
ERROR_DETAIL_CAP: Final = 500


def safe_text(value: str) -> str:
    """Text that can be written as UTF-8 (a dead letter, a log line): lone surrogates, from a
    decoded payload or an exception message, become "?"."""
    return value.encode("utf-8", "replace").decode("utf-8")


def error_detail(exc: BaseException, cap: int = ERROR_DETAIL_CAP) -> str:
    """`Type: message`, capped and safe to write: what a dead letter or a log line says of an
    unexpected error."""
    text = safe_text(f"{type(exc).__name__}: {exc}")
    return text if len(text) <= cap else text[: cap - 1] + "…"


def failure(exc: BaseException) -> dict[str, str]:
    """Log fields for an unexpected error: its capped detail and its traceback, safe to write."""
    return {"error": error_detail(exc), "traceback": safe_text("".join(traceback.format_exception(exc)))}


def die(process: str, what: str, code: int = EXIT_TASK_DIED) -> None:
    """End the process now, loudly. No clean-up runs: nothing may hang on the way out."""
    sys.stdout.flush()
    sys.stderr.write(f"{process}: {what}; exiting with code {code}\n")
    sys.stderr.flush()
    os._exit(code)


class Supervisor:
    """Owns a process's background tasks; the death of any of them ends the process."""

    def __init__(self, process: str, on_death: Callable[[str], None] | None = None) -> None:
        """`on_death(what)` replaces ending the process, for code that also runs inside
        another program (the simulator inside a test); it must stop the work loudly."""
        self.process = process
        self._on_death = on_death
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    @property
    def tasks(self) -> frozenset[asyncio.Task[Any]]:
        return frozenset(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str, job: bool = False) -> asyncio.Task[Any]:
        """Run `coro` under supervision. A service (the default) must run until the process
        stops: any end is fatal. A job (`job=True`) may finish; only its failure is fatal."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._job_ended if job else self._ended)
        return task

    def _job_ended(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is None:
            self._tasks.discard(task)
            return
        self._ended(task)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if self._stopping:
            return
        if task.cancelled():
            how, exc = "was cancelled", None
        elif (exc := task.exception()) is not None:
            how = f"raised {error_detail(exc)}"
        else:
            how = "returned"
        log.critical(
            "supervised task ended unexpectedly; the process exits",
            process=self.process,
            task=task.get_name(),
            ended=how,
            traceback=safe_text("".join(traceback.format_exception(exc))) if exc is not None else None,
        )
        what = f"task {task.get_name()!r} {how}"
        if self._on_death is not None:
            self._on_death(what)
            return
        die(self.process, what)

    def standing_down(self) -> None:
        """The process is stopping in order: from now on a task's end is expected."""
        self._stopping = True

    async def stop(self, grace_s: float = 5.0) -> None:
        """Cancel every task (an orderly stop: no task's end is an error from now on)."""
        self._stopping = True
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace_s)


__all__ = ["EXIT_TASK_DIED", "Supervisor", "die", "error_detail", "failure", "safe_text"]
