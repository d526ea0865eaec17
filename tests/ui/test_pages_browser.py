"""The clinician pages in a real browser (Debian Chromium driven by Playwright) against a real
API process: log in and out, errors in words, and axe-core on every page with no serious or
critical violation; a phone-sized screenshot of each page goes to .rpm/screenshots/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.api.conftest import TestUser
from tests.api.support import PASSWORD
from tests.ui.conftest import AXE, ROOT

SHOTS = ROOT / ".rpm" / "screenshots"
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    # bypass_csp: only so that axe-core can be injected; the policy itself is tested in tests/ui/test_page_session.py.
    ctx = browser.new_context(viewport=PHONE, bypass_csp=True)
    yield ctx
    ctx.close()


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations of the page as it is now."""
    page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = page.evaluate("async () => await axe.run(document)")
    return [v for v in result["violations"] if v["impact"] in ("serious", "critical")]


def check_page(page: Page, name: str) -> None:
    violations = axe_violations(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(Path(SHOTS / f"{name}.png")), full_page=True)
    assert violations == [], [(v["id"], v["help"], [n["target"] for n in v["nodes"]]) for v in violations]


def log_in(page: Page, api_url: str, user: TestUser, password: str = PASSWORD) -> None:
    page.goto(f"{api_url}/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_login_workspace_and_logout(context: BrowserContext, api_url: str, make_user: Callable[..., TestUser]) -> None:
    clinician = make_user("clinician")
    page = context.new_page()
    page.goto(f"{api_url}/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    check_page(page, "login")

    log_in(page, api_url, clinician)
    page.wait_for_url(f"{api_url}/workspace")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Welcome")
    check_page(page, "workspace")
    cookie = next(c for c in context.cookies() if c["name"] == "rpm_session")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"

    # The session survives a reload; logging out ends it.
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Welcome")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{api_url}/")
    page.goto(f"{api_url}/workspace")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def test_wrong_password_page(context: BrowserContext, api_url: str, make_user: Callable[..., TestUser]) -> None:
    clinician = make_user("clinician")
    page = context.new_page()
    log_in(page, api_url, clinician, password="certainly-not-the-password")
    expect(page.get_by_role("alert")).to_contain_text("username or password is not right")
    check_page(page, "login-error")


def test_patient_gets_the_plain_page(
    context: BrowserContext, api_url: str, make_user: Callable[..., TestUser], make_patient: Callable[[], str]
) -> None:
    patient = make_user("patient", patient_id=make_patient())
    page = context.new_page()
    log_in(page, api_url, patient)
    expect(page.get_by_role("heading", level=1)).to_have_text("This workspace is for clinicians")
    check_page(page, "not-clinician")
