"""Fixtures of the stream-processing tests: the session stack plus its Faust worker."""

from __future__ import annotations

import pytest

from infra.stack import Stack


@pytest.fixture
def worker(stack: Stack) -> Stack:
    """The stack with its Faust worker running (started once; restarted if a test killed it)."""
    stack.start(["streams"])
    return stack
