"""Supervised tasks: a service that ends or a job that fails ends the process (exit 70, the
task named); an orderly stop is not a failure; `Progress` says not ready only when input
waits without progress."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

from prometheus_client import CollectorRegistry

from core.progress import Progress
from core.supervision import EXIT_TASK_DIED, Supervisor, error_detail


def _run(body: str) -> subprocess.CompletedProcess[str]:
    script = (
        textwrap.dedent(
            """
        import asyncio
        from core.supervision import Supervisor

        async def main():
            sup = Supervisor("demo")
        """
        )
        + textwrap.indent(textwrap.dedent(body), "    ")
        + "\nasyncio.run(main())\nprint('survived')\n"
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)


def test_a_service_that_raises_ends_the_process_naming_it() -> None:
    result = _run(
        """
        async def broken():
            raise KeyError("boom")
        sup.spawn(broken(), name="lane-store")
        await asyncio.sleep(5)
        """
    )
    assert result.returncode == EXIT_TASK_DIED
    assert "survived" not in result.stdout
    assert "lane-store" in result.stdout
    assert "KeyError" in result.stdout
    assert "task 'lane-store' raised KeyError" in result.stderr


def test_a_service_that_returns_ends_the_process_but_a_finished_job_does_not() -> None:
    returned = _run(
        """
        async def done():
            return None
        sup.spawn(done(), name="refresh-loop")
        await asyncio.sleep(5)
        """
    )
    assert returned.returncode == EXIT_TASK_DIED
    assert "task 'refresh-loop' returned" in returned.stderr
    job = _run(
        """
        async def done():
            return None
        sup.spawn(done(), name="confirm", job=True)
        await asyncio.sleep(0.2)
        """
    )
    assert job.returncode == 0
    assert "survived" in job.stdout


def test_an_orderly_stop_is_not_a_failure() -> None:
    result = _run(
        """
        sup.spawn(asyncio.sleep(60), name="forever")
        await asyncio.sleep(0.1)
        await sup.stop()
        """
    )
    assert result.returncode == 0
    assert "survived" in result.stdout


def test_on_death_replaces_the_exit_for_code_hosted_in_another_program() -> None:
    deaths: list[str] = []

    async def main() -> None:
        sup = Supervisor("simulator", on_death=deaths.append)

        async def broken() -> None:
            raise ValueError("x" * 2000)

        sup.spawn(broken(), name="device-link", job=True)
        await asyncio.sleep(0.1)
        await sup.stop()

    asyncio.run(main())
    assert len(deaths) == 1
    assert deaths[0].startswith("task 'device-link' raised ValueError: xxx")
    assert len(deaths[0]) < 600  # the detail is capped


def test_error_detail_is_typed_and_capped() -> None:
    assert error_detail(ValueError("bad")) == "ValueError: bad"
    assert len(error_detail(RuntimeError("y" * 10_000))) == 500
    # An exception message carrying a lone surrogate (from a decoded payload) stays writable.
    assert error_detail(ValueError("bad \ud800 unit")).encode("utf-8") == b"ValueError: bad ? unit"


def test_progress_is_ready_unless_input_waits_without_progress() -> None:
    progress = Progress("demo", stall_after_s=10, registry=CollectorRegistry())
    assert progress.verdict()[0] is False  # not connected yet
    progress.up = True
    now = progress.last_progress
    assert progress.verdict(now + 3600) == (True, "idle: nothing waiting")
    progress.waiting(5)
    assert progress.verdict(now + 5)[0] is True
    ready, detail = progress.verdict(now + 30)
    assert ready is False
    assert "5 waiting" in detail
    progress.advanced()
    assert progress.verdict(progress.last_progress + 5)[0] is True
    progress.waiting(0)
    assert progress.verdict(progress.last_progress + 3600)[0] is True
    names = {m.name for m in progress.collect()}
    assert names == {"rpm_demo_last_progress_timestamp_seconds", "rpm_demo_input_waiting", "rpm_demo_ready"}
