"""What several benchmarks share: a stack of their own in a temporary directory, a process's
CPU time from /proc, a free port, and the `rpm_*` figures a process exposes on /metrics with
the quantile of a Prometheus histogram.

Run with the repository root on the path (`PYTHONPATH=. .venv/bin/python bench/<name>.py`), as
every benchmark is."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from infra.stack import Ports, Stack

CLK_TCK = os.sysconf("SC_CLK_TCK")


@contextmanager
def temporary_stack(prefix: str, services: Iterable[str], *, keep: bool = False) -> Iterator[Stack]:
    """A stack on free ports with its state in a new temporary directory, these services
    started; stopped and the directory removed on the way out (unless `keep`)."""
    state = Path(tempfile.mkdtemp(prefix=prefix))
    state.chmod(0o755)
    stack = Stack(state, Ports.free(), quiet=True)
    try:
        stack.start(list(services))
        yield stack
    finally:
        stack.stop()
        if keep:
            print(f"state kept in {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far; 0 for no process or one that has gone."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int, prefix: str) -> dict[str, float]:
    """The samples whose names start with `prefix` on 127.0.0.1:port/metrics, by name with
    labels; empty when the process does not answer."""
    out: dict[str, float] = {}
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return out
    for line in text.splitlines():
        if line.startswith(prefix) and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def buckets(samples: dict[str, float], histogram: str) -> dict[float, float]:
    """A histogram's cumulative bucket counts by upper bound, from `scrape`'s samples."""
    return {
        float(k.split('le="')[1].split('"')[0]): v for k, v in samples.items() if k.startswith(f"{histogram}_bucket")
    }


def bucket_quantile(counts: dict[float, float], q: float) -> float:
    """The upper bound of the first bucket holding the q-quantile (NaN for no buckets)."""
    if not counts:
        return float("nan")
    total = max(counts.values())
    for bound in sorted(counts):
        if counts[bound] >= q * total:
            return bound
    return float("inf")
