"""Health probes of the stack's components: ports, the SMTP greeting, HTTP status, and the
platform processes' Prometheus metrics (parsed with prometheus_client's text parser)."""

from __future__ import annotations

import socket
import time


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def port_answers(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def smtp_greets(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> bool:
    """Whether an SMTP server answers on the port with its 220 greeting."""
    import smtplib

    try:
        with smtplib.SMTP(host, port, timeout=timeout) as client:
            return client.noop()[0] == 250
    except (OSError, smtplib.SMTPException):
        return False


def http_status(port: int, path: str, timeout: float = 2.0) -> int:
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=timeout).status_code


def progress_probe(port: int, component: str) -> tuple[bool, str]:
    """Readiness of a platform process from its metrics (core/progress.py): connected, and
    not holding input without progress for longer than its stall limit."""
    values = metric_values(port, f"rpm_{component}_")
    ready = values.get(f"rpm_{component}_ready")
    if ready is None:  # a process without progress metrics: up is all it says
        return values.get(f"rpm_{component}_up") == 1.0, "up"
    waiting = int(values.get(f"rpm_{component}_input_waiting", 0))
    quiet = time.time() - values.get(f"rpm_{component}_last_progress_timestamp_seconds", time.time())
    if ready == 1.0:
        return True, f"ready, {waiting} waiting" if waiting else "ready, idle"
    if values.get(f"rpm_{component}_up") != 1.0:
        return False, "NOT READY: not connected"
    return False, f"NOT READY: stalled, {waiting} waiting, no progress for {quiet:.0f} s"


def metric_values(port: int, prefix: str) -> dict[str, float]:
    """Every unlabelled sample whose name starts with `prefix`."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2.0).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(prefix) and not sample.labels:
                found[sample.name] = sample.value
    return found


def metric_value(port: int, name: str) -> float | None:
    """Read one unlabelled sample from a Prometheus text endpoint."""
    return metric_values(port, name).get(name)
