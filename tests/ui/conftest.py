"""Fixtures of the page tests: the API test fixtures (settings, in-process app, users)."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from infra.stack import Stack
from tests.api.conftest import (  # noqa: F401 - fixtures re-exported for pytest
    add_observations,
    anyio_backend,
    client,
    make_care_team,
    make_patient,
    make_user,
    password_hash,
    settings,
    settings_for,
)

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = Path(os.environ.get("RPM_CHROMIUM", "/usr/bin/chromium"))
# Debian's Chromium, headless, with nothing that reaches out to the network (environment.md).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def api_url(stack: Stack) -> str:
    """A real API process of the test stack (python -m api), as `make run` starts it."""
    stack.start(["api"])
    return f"http://127.0.0.1:{stack.ports.api}"


@pytest.fixture(scope="session")
def playwright(api_url: str) -> Iterator[Playwright]:
    # After the stack (api_url): the sync driver keeps an event loop running in this thread,
    # and the stack's start-up runs its own with asyncio.run().
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs the Debian package chromium")
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: `make setup` installs axe-core from package-lock.json")
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()
