"""The patient portal on a small phone (375 px wide) in a real browser: the navigation takes two
rows, not three; My care plan says when the plan last changed in the patient's time zone (the
profile's, else the plan's), naming the zone. axe-core; screenshots in .rpm/screenshots/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, ViewportSize, expect

from core.careplan import CarePlan
from tests.api.conftest import TestUser
from tests.api.test_patients_api import store_plan
from tests.ui.test_pages_browser import check_page, log_in

SMALL_PHONE: ViewportSize = {"width": 375, "height": 812}
CHANGED = datetime(2026, 11, 28, 23, 30, tzinfo=UTC)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    # bypass_csp: only so that axe-core can be injected (the policy is tested elsewhere).
    ctx = browser.new_context(viewport=SMALL_PHONE, bypass_csp=True, has_touch=True)
    yield ctx
    ctx.close()


def test_navigation_in_two_rows_and_the_plan_date_in_my_time_zone(
    context: BrowserContext,
    api_url: str,
    db: psycopg.Connection,
    make_user: Callable[..., TestUser],
    make_patient: Callable[[], str],
) -> None:
    me = make_patient()
    patient = make_user("patient", patient_id=me)
    store_plan(db, CarePlan(patient_id=me, timezone="UTC", effective_from=CHANGED - timedelta(days=30)))
    db.execute("UPDATE care_plans SET updated_at = %s WHERE patient_id = %s", (CHANGED, me))

    page = context.new_page()
    log_in(page, api_url, patient)
    page.wait_for_url(f"{api_url}/me")
    nav = page.get_by_role("navigation", name="My pages")
    links = nav.get_by_role("link")
    expect(links).to_have_count(6)

    def assert_two_rows(width: int) -> None:
        boxes = [b for b in (links.nth(i).bounding_box() for i in range(6)) if b is not None]
        assert len(boxes) == 6
        rows = sorted({round(b["y"]) for b in boxes})
        assert len(rows) == 2, boxes  # two rows of three
        assert all(b["x"] >= 0 and b["x"] + b["width"] <= width for b in boxes)  # nothing off-screen
        assert all(b["height"] >= 24 for b in boxes)  # WCAG 2.2 target size

    assert_two_rows(SMALL_PHONE["width"])
    check_page(page, "portal-nav-phone")
    page.set_viewport_size({"width": 320, "height": 640})
    assert_two_rows(320)
    check_page(page, "portal-nav-phone-320")
    page.set_viewport_size(SMALL_PHONE)

    # No zone of my own and a plan in UTC: the date says UTC.
    nav.get_by_role("link", name="My care plan").click()
    page.wait_for_url(f"{api_url}/me/care-plan")
    expect(page.get_by_text("Plan version 1, last changed 28 November 2026 at 23:30, UTC time.")).to_be_visible()

    # My profile's zone: the same moment, in Tokyo it was already the next day.
    db.execute("INSERT INTO patient_preferences (patient_id, time_zone) VALUES (%s, 'Asia/Tokyo')", (me,))
    page.reload()
    expect(page.get_by_text("Plan version 1, last changed 29 November 2026 at 08:30, Asia/Tokyo time.")).to_be_visible()
    check_page(page, "portal-care-plan-phone-375")
