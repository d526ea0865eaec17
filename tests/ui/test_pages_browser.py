"""The clinician pages in a real browser (Debian Chromium driven by Playwright) against a real
API process: log in and out, errors in words, and axe-core on every page with no serious or
critical violation; a phone-sized screenshot of each page goes to .rpm/screenshots/."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
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
    expect(page.get_by_text("No patients are on your care teams.")).to_be_visible()
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


def test_patient_lands_on_their_own_page(
    context: BrowserContext, api_url: str, make_user: Callable[..., TestUser], make_patient: Callable[[], str]
) -> None:
    patient = make_user("patient", patient_id=make_patient())
    page = context.new_page()
    log_in(page, api_url, patient)
    page.wait_for_url(f"{api_url}/me")
    expect(page.get_by_role("heading", level=1)).to_have_text("My health")


def test_care_plan_editor_what_if_then_save(
    context: BrowserContext,
    api_url: str,
    make_user: Callable[..., TestUser],
    make_patient: Callable[[], str],
    make_care_team: Callable[..., object],
    add_observations: Callable[..., None],
) -> None:
    clinician = make_user("clinician")
    patient_id = make_patient()
    make_care_team([clinician], [patient_id])
    # 30 min of SpO2 at 88 %, then back to 95 %: under the default plan one spo2_low alert
    # (below 90 % for 10 min) and one NEWS2 single-parameter alert (SpO2 88 % scores 3);
    # a proposed 85 % limit keeps only the NEWS2 one.
    start = datetime.now(UTC) - timedelta(hours=3)
    dip = [(start + timedelta(minutes=m), 88.0) for m in range(30)]
    recovery = [(start + timedelta(minutes=30 + m), 95.0) for m in range(30)]
    add_observations(patient_id, "spo2", dip + recovery)

    page = context.new_page()
    log_in(page, api_url, clinician)
    page.wait_for_url(f"{api_url}/workspace")
    page.goto(f"{api_url}/patients/{patient_id}/care-plan")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Care plan of {patient_id}")
    check_page(page, "care-plan")

    spo2_raise = page.locator("#spo2_low-raise")
    spo2_raise.fill("not a number")
    page.get_by_role("button", name="What if?").click()
    expect(page.get_by_role("alert")).to_contain_text("raise at must be a number")
    check_page(page, "care-plan-error")

    page.locator("#spo2_low-raise").fill("85")
    page.locator("#spo2_low-clear").fill("87")
    page.get_by_label("Replay the last").fill("1")
    page.get_by_role("button", name="What if?").click()
    whatif = page.locator("section.whatif")
    expect(whatif).to_contain_text("current plan raised 2 alerts;")
    expect(whatif).to_contain_text("would have raised 1 (1 fewer)")
    expect(whatif.get_by_role("row", name="spo2 low 1 0")).to_be_visible()
    expect(whatif.get_by_role("row", name="news2 single parameter 1 1")).to_be_visible()
    check_page(page, "care-plan-what-if")
    # The proposal is still in the form, not saved.
    expect(page.locator("#spo2_low-raise")).to_have_value("85.0")
    page.goto(f"{api_url}/patients/{patient_id}/care-plan")
    expect(page.locator("#spo2_low-raise")).to_have_value("90.0")

    page.locator("#spo2_low-raise").fill("85")
    page.locator("#spo2_low-clear").fill("87")
    page.get_by_label("Note to the patient").fill("Your lungs need a lower oxygen limit.")
    page.get_by_role("button", name="Save plan").click()
    expect(page.get_by_role("status")).to_contain_text("The care plan was saved")
    page.reload()
    expect(page.get_by_text("Version 1")).to_be_visible()
    expect(page.locator("#spo2_low-raise")).to_have_value("85.0")
    expect(page.get_by_label("Note to the patient")).to_have_value("Your lungs need a lower oxygen limit.")


def test_care_plan_of_a_patient_outside_the_team_is_not_found(
    context: BrowserContext, api_url: str, make_user: Callable[..., TestUser], make_patient: Callable[[], str]
) -> None:
    clinician = make_user("clinician")
    other = make_patient()
    page = context.new_page()
    log_in(page, api_url, clinician)
    page.wait_for_url(f"{api_url}/workspace")
    answer = page.goto(f"{api_url}/patients/{other}/care-plan")
    assert answer is not None
    assert answer.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Patient not found")
    check_page(page, "not-found")


def test_patient_page_draws_trends_with_the_care_plan_limits(
    context: BrowserContext,
    api_url: str,
    make_user: Callable[..., TestUser],
    make_patient: Callable[[], str],
    make_care_team: Callable[..., object],
    add_observations: Callable[..., None],
) -> None:
    clinician = make_user("clinician")
    patient_id = make_patient()
    make_care_team([clinician], [patient_id])
    start = datetime.now(UTC) - timedelta(hours=2)
    add_observations(patient_id, "spo2", [(start + timedelta(minutes=10 * m), 95.0 - m) for m in range(6)])

    page = context.new_page()
    log_in(page, api_url, clinician)
    page.wait_for_url(f"{api_url}/workspace")
    # The workspace lists the patients of the clinician's care teams, linked to their pages.
    page.get_by_role("link", name=f"Patient {patient_id}", exact=True).click()
    page.wait_for_url(f"{api_url}/patients/{patient_id}")
    spo2 = page.get_by_role("region", name="Oxygen saturation (SpO2)")
    expect(spo2).to_contain_text("90 %")  # the latest reading, with its age
    expect(spo2).to_contain_text("min ago")
    chart = spo2.get_by_role("img")
    expect(chart).to_have_attribute("aria-label", re.compile(r"6 readings; care-plan alert below 90; .*clear at 92"))
    assert chart.locator("polyline").get_attribute("points").count(",") == 6
    expect(chart.locator("line")).to_have_count(2)
    expect(page.get_by_role("region", name="Heart rate")).to_contain_text("No reading in the last 24 hours")
    check_page(page, "patient")


def test_forms_work_under_the_pages_own_csp(browser: Browser, api_url: str, make_user: Callable[..., TestUser]) -> None:
    # No CSP bypass here: the policy the pages are sent with must let their forms post.
    ctx = browser.new_context(viewport=PHONE)
    try:
        page = ctx.new_page()
        log_in(page, api_url, make_user("clinician"))
        page.wait_for_url(f"{api_url}/workspace")
        page.get_by_role("button", name="Log out").click()
        page.wait_for_url(f"{api_url}/")
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    finally:
        ctx.close()
