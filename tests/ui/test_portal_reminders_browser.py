"""The reminder pages in a real browser on a phone-sized viewport (ADR 0026): a patient sets
quiet hours and channels on `/me/profile` (a mistake is explained in words first), then sees a
reminder on `/me/reminders` with how it ended and marks it seen; axe-core finds no serious or
critical violation; screenshots go to .rpm/screenshots/."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
from playwright.sync_api import BrowserContext, expect

from tests.api.conftest import TestUser
from tests.portal.test_reminders_api import add_reminder
from tests.ui.test_pages_browser import check_page, context, log_in  # noqa: F401 - context is a fixture


def test_a_patient_sets_quiet_hours_and_sees_a_reminder_on_a_phone(
    context: BrowserContext,  # noqa: F811 - the fixture imported above
    api_url: str,
    db: psycopg.Connection,
    make_user: Callable[..., TestUser],
    make_patient: Callable[[], str],
) -> None:
    patient_id = make_patient()
    db.execute(
        "INSERT INTO care_plans (patient_id, version, plan) VALUES (%s, 1, %s::jsonb)",
        (patient_id, f'{{"patient_id": "{patient_id}", "version": 1, "timezone": "Europe/Oslo"}}'),
    )
    patient = make_user("patient", patient_id=patient_id)
    page = context.new_page()
    log_in(page, api_url, patient)
    page.wait_for_url(f"{api_url}/me*")

    page.goto(f"{api_url}/me/profile")
    expect(page.get_by_role("heading", level=1)).to_have_text("Profile")
    expect(page.get_by_role("link", name="Profile")).to_have_attribute("aria-current", "page")
    expect(page.get_by_label("In the app")).to_be_checked()
    expect(page.get_by_text("Your care plan uses Europe/Oslo.")).to_be_visible()
    check_page(page, "portal-profile")

    # E-mail chosen without an address: explained, nothing saved.
    page.get_by_label("By e-mail").check()
    page.get_by_label("Quiet from").fill("22:00")
    page.get_by_label("Quiet until").fill("07:00")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("To get e-mail, please add your e-mail.")
    expect(page.get_by_label("Quiet from")).to_have_value("22:00")  # what was typed stays
    check_page(page, "portal-profile-error")
    assert db.execute("SELECT 1 FROM patient_preferences WHERE patient_id = %s", (patient_id,)).fetchone() is None

    page.get_by_label("E-mail", exact=True).fill("pat@example.org")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved. We will remind you this way from now on.")
    expect(page.get_by_label("By e-mail")).to_be_checked()
    expect(page.get_by_label("Quiet until")).to_have_value("07:00")
    row = db.execute(
        "SELECT email, channels, quiet_start::text, quiet_end::text FROM patient_preferences WHERE patient_id = %s",
        (patient_id,),
    ).fetchone()
    assert row == ("pat@example.org", ["in_app", "email"], "22:00:00", "07:00:00")

    # A reminder the alert service sent, one it skipped in quiet hours, and one coming up.
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    sent = add_reminder(db, patient_id, at=now - timedelta(minutes=20), state="sent", outcome="sent")
    add_reminder(
        db,
        patient_id,
        at=now - timedelta(hours=8),
        state="skipped",
        outcome="skipped_quiet_hours",
        metric="medication_taken",
    )
    add_reminder(db, patient_id, at=now + timedelta(hours=1), state="queued", outcome=None, metric="body_weight")
    page.get_by_role("link", name="Reminders").click()
    page.wait_for_url(f"{api_url}/me/reminders")
    expect(page.get_by_role("heading", level=1)).to_have_text("Reminders")
    upcoming = page.locator("section", has=page.get_by_role("heading", name="Coming up"))
    expect(upcoming).to_contain_text("Weigh yourself")
    card = page.locator(f"#reminder-{sent}")
    expect(card).to_contain_text("Check your blood pressure")
    expect(card).to_contain_text("Sent to you.")
    expect(card).to_contain_text("There is still time.")
    expect(page.get_by_text("Not sent. It was in your quiet hours.")).to_be_visible()
    expect(page.get_by_text("Times are in your time zone, Europe/Oslo.")).to_be_visible()
    check_page(page, "portal-reminders")
    card.get_by_role("button", name="Mark as seen").click()
    expect(page.locator(f"#reminder-{sent}")).to_contain_text("Seen")
    seen = db.execute("SELECT seen_at FROM reminders WHERE id = %s", (sent,)).fetchone()
    assert seen is not None
    assert seen[0] is not None
