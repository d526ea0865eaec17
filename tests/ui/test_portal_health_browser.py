"""The patient's own pages in a real browser on a phone-sized screen (issue 12, ADR 0027): a
patient logs in and lands on My health, sees each reading with its limit drawn and what it
means in plain words, switches the charts to 7 days, opens My care plan (times, limits, the care
team's note, weeks and streak), opens a lesson and answers its questions (checked by the
server, feedback in words). axe-core finds no serious or critical violation on any page;
screenshots go to .rpm/screenshots/portal-*.png."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time, timedelta

import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from core.careplan import CarePlan, HfWeightGain, MeasurementSchedule, MedicationSchedule
from tests.api.conftest import TestUser
from tests.api.support import raise_alert
from tests.api.test_patients_api import bind_device, store_plan
from tests.ui.test_pages_browser import PHONE, check_page, log_in


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    # A phone: the portal is phone-first. bypass_csp only so that axe-core can be injected.
    ctx = browser.new_context(viewport=PHONE, bypass_csp=True, has_touch=True)
    yield ctx
    ctx.close()


def test_patient_sees_readings_plan_and_a_lesson(
    context: BrowserContext,
    api_url: str,
    db: psycopg.Connection,
    make_user: Callable[..., TestUser],
    make_patient: Callable[[], str],
    add_observations: Callable[..., None],
) -> None:
    me = make_patient()
    patient = make_user("patient", patient_id=me)
    now = datetime.now(UTC)
    store_plan(
        db,
        CarePlan(
            patient_id=me,
            timezone="Europe/London",
            effective_from=now - timedelta(days=30),
            hf_weight=HfWeightGain(enabled=True),
            measurements=(
                MeasurementSchedule(metric="body_weight", times_per_day=1),
                MeasurementSchedule(metric="bp_systolic", times_of_day=(time(8), time(20))),
            ),
            medications=(MedicationSchedule(dose_id="water tablet", times_of_day=(time(9),)),),
            note="Your heart team set these limits after your last visit.\nCall us if you are worried.",
        ),
    )
    cuff, scale = bind_device(db, me, "bp_cuff"), bind_device(db, me, "scale")
    db.execute("UPDATE devices SET battery = 0.8, battery_at = %s WHERE id = %s", (now, cuff))
    hours = range(3, 7 * 24, 6)  # 3, 9, ... 165 h ago: 4 in the last day, 28 in the week
    add_observations(
        me,
        "bp_systolic",
        [(now - timedelta(hours=h), 150 + (h % 24)) for h in hours] + [(now - timedelta(minutes=10), 186)],
        cuff,
    )
    add_observations(me, "body_weight", [(now - timedelta(days=d, hours=1), 81.0 + d / 10) for d in range(8)], scale)
    raise_alert(db, me, rule="bp_crisis_unconfirmed", severity="high")

    page = context.new_page()
    log_in(page, api_url, patient)
    page.wait_for_url(f"{api_url}/me")
    expect(page.get_by_role("heading", level=1)).to_have_text("My health")
    bp = page.get_by_role("region", name="Blood pressure, top number")
    expect(bp).to_contain_text("186 mmHg")
    expect(bp).to_contain_text("Your reading is above the limit of 180 mmHg your care team set. They have been told.")
    expect(bp).to_contain_text("call emergency services")
    expect(bp.get_by_role("img")).to_have_attribute(
        "aria-label", "Blood pressure, top number, Last 24 hours: 5 points. Your limits are 180 mmHg."
    )
    expect(bp.locator("svg text")).to_have_text("limit 180")
    expect(page.get_by_role("region", name="What your care team is looking at")).to_contain_text(
        "Your blood pressure was very high. Sit still for five minutes and measure again."
    )
    weight = page.get_by_role("region", name="Weight")
    expect(weight).to_contain_text(
        "Your care team is told if your weight goes up by 1.4 kg in one day, or by 2.3 kg in one week."
    )
    expect(weight).to_contain_text("Only one reading in this time. Pick the last 7 days to see more.")
    devices = page.get_by_role("region", name="My devices")
    expect(devices).to_contain_text("Blood pressure cuff")
    expect(devices).to_contain_text("Battery 80 percent.")
    check_page(page, "portal-health")

    page.get_by_role("link", name="Last 7 days").click()
    page.wait_for_url(f"{api_url}/me?range=7d")
    expect(bp.get_by_role("img")).to_have_attribute(
        "aria-label", "Blood pressure, top number, Last 7 days: 29 points. Your limits are 180 mmHg."
    )
    check_page(page, "portal-health-7d")

    page.get_by_role("navigation", name="My pages").get_by_role("link", name="My care plan").click()
    page.wait_for_url(f"{api_url}/me/care-plan")
    expect(page.get_by_role("heading", level=1)).to_have_text("My care plan")
    expect(page.get_by_text("Times are in the Europe/London time zone.")).to_be_visible()
    expect(page.get_by_text("Measure your blood pressure at 08:00 and 20:00.")).to_be_visible()
    expect(page.get_by_text("Take water tablet at 09:00.")).to_be_visible()
    expect(page.get_by_role("region", name="Why these limits")).to_contain_text("after your last visit")
    expect(page.get_by_role("region", name="How you are doing")).to_contain_text("Week starting")
    learn = page.get_by_role("region", name="Learn about your health")
    expect(learn.get_by_role("listitem").first).to_contain_text("Living with heart failure")
    expect(learn.get_by_role("listitem").first).to_contain_text("for you")
    check_page(page, "portal-care-plan")

    learn.get_by_role("link", name="Living with heart failure").click()
    page.wait_for_url(f"{api_url}/me/learn/heart-failure")
    expect(page.get_by_role("heading", level=1)).to_have_text("Living with heart failure")
    page.get_by_role("group", name="1. When is the best time to weigh yourself?").get_by_label(
        "In the morning, after the toilet and before you eat"
    ).check()
    page.get_by_role("group", name="2. Why can your weight go up fast with heart failure?").get_by_label(
        "Because you ate a big meal"
    ).check()
    page.get_by_role("button", name="Check my answers").click()
    expect(page.get_by_role("status")).to_have_text(
        "You got 1 of 3 right. Read the lesson again and have another go. There is no limit."
    )
    q1 = page.get_by_role("group", name="1. When is the best time to weigh yourself?")
    expect(q1).to_contain_text("Right. Weighing at the same time each morning")
    expect(page.get_by_role("group", name="2. Why can your weight go up fast with heart failure?")).to_contain_text(
        "Not quite. A fast gain is often water"
    )
    expect(page.get_by_role("group", name="3. Which of these should you tell your care team about?")).to_contain_text(
        "You did not pick an answer for this one."
    )
    expect(q1.get_by_label("In the morning, after the toilet and before you eat")).to_be_checked()
    check_page(page, "portal-lesson")
