"""Fixtures of the alert service's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.stack import Stack


@pytest.fixture(scope="module")
def senders(stack: Stack) -> Iterator[Stack]:
    """The stack's SMTP server, and no other sender than this module's."""
    was_running = stack.pid("alerts") is not None
    if was_running:
        stack.stop(["alerts"])
    stack.start_smtp()
    yield stack
    if was_running:
        stack.start_alerts()


@pytest.fixture(scope="module")
def without_alert_service(stack: Stack) -> Iterator[Stack]:
    """The stack without its alert service for a module whose tests run the service's own work
    themselves (its retention round at start-up would race theirs); restarted afterwards."""
    was_running = stack.pid("alerts") is not None
    if was_running:
        stack.stop(["alerts"])
    yield stack
    if was_running:
        stack.start_alerts()
