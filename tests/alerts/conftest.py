"""Fixtures of the alert service's tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from infra.stack import Stack


@contextmanager
def _alert_service_stopped(stack: Stack) -> Iterator[Stack]:
    """The stack's alert service stopped, and started again afterwards if it was running."""
    was_running = stack.pid("alerts") is not None
    if was_running:
        stack.stop(["alerts"])
    yield stack
    if was_running:
        stack.start_alerts()


@pytest.fixture(scope="module")
def senders(stack: Stack) -> Iterator[Stack]:
    """The stack's SMTP server, and no other sender than this module's."""
    with _alert_service_stopped(stack):
        stack.start_smtp()
        yield stack


@pytest.fixture(scope="module")
def without_alert_service(stack: Stack) -> Iterator[Stack]:
    """The stack without its alert service for a module whose tests run the service's own work
    themselves (its retention round at start-up would race theirs); restarted afterwards."""
    with _alert_service_stopped(stack):
        yield stack
