"""The privacy officer's page in a real browser against a real API process (ADR 0025): a patient
flags a clinician's access through the API; an admin finds the flag from the staff navigation
(who, role, when, what, the patient's words), closes it with a note, and it leaves the open list
while the patient's log shows the note; a clinician is refused the page and cannot close a flag.
axe-core on each page; desktop and phone-sized screenshots in .rpm/screenshots/."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, ViewportSize, expect

from tests.api.conftest import TestUser
from tests.ui.test_pages_browser import PHONE, check_page, log_in
from tests.ui.test_portal_access_browser import bearer

DESKTOP: ViewportSize = {"width": 1280, "height": 900}
NOTE = "I have never met this doctor."
OUTCOME = "Dr Ada Lee joined your care team that day and read your summary. This was allowed."


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    # bypass_csp: only so that axe-core can be injected (the policy is tested elsewhere).
    ctx = browser.new_context(viewport=DESKTOP, bypass_csp=True)
    yield ctx
    ctx.close()


def test_admin_closes_a_patients_flag_and_a_clinician_is_refused(
    context: BrowserContext,
    browser: Browser,
    api_url: str,
    db: psycopg.Connection,
    make_user: Callable[..., TestUser],
    make_patient: Callable[[], str],
    make_care_team: Callable[..., object],
) -> None:
    patient_id = make_patient()
    db.execute("UPDATE patients SET display_name = 'Maria Flagwell' WHERE id = %s", (patient_id,))
    patient = make_user("patient", patient_id=patient_id)
    clinician, admin = make_user("clinician"), make_user("admin")
    db.execute("UPDATE users SET display_name = 'Dr Ada Lee' WHERE id = %s", (clinician.id,))
    make_care_team([clinician], [patient_id])
    with httpx.Client(base_url=api_url, timeout=10) as http:
        summary = http.get(f"/api/v1/patients/{patient_id}/summary", headers=bearer(http, clinician))
        assert summary.status_code == 200, summary.text
        mine = bearer(http, patient)
        log = http.get("/api/v1/me/access-log", params={"role": "clinician"}, headers=mine)
        assert log.status_code == 200, log.text
        event = next(e for e in log.json()["items"] if e["who"]["name"] == "Dr Ada Lee")
        flagged = http.post(f"/api/v1/me/access-log/{event['id']}/flag", json={"note": NOTE}, headers=mine)
        assert flagged.status_code == 201, flagged.text
        flag_id = flagged.json()["id"]

        # The admin lands on the workspace and follows the staff navigation to the queue.
        page = context.new_page()
        log_in(page, api_url, admin)
        page.wait_for_url(f"{api_url}/workspace")
        page.get_by_role("navigation", name="Pages").get_by_role("link", name="Privacy flags").click()
        page.wait_for_url(f"{api_url}/admin/privacy-flags")
        expect(page.get_by_role("heading", level=1)).to_have_text("Privacy flags")
        card = page.locator(f"#flag-{flag_id}")
        expect(card.get_by_role("heading")).to_have_text(f"Flag {flag_id}: patient Maria Flagwell ({patient_id})")
        expect(card).to_contain_text("Dr Ada Lee (clinician)")
        expect(card).to_contain_text(f"user id {clinician.id}")
        expect(card).to_contain_text(f"audit event {event['id']}")
        expect(card.locator("q")).to_have_text(NOTE)
        check_page(page, "admin-privacy-flags")
        page.set_viewport_size(PHONE)
        check_page(page, "admin-privacy-flags-phone")
        page.set_viewport_size(DESKTOP)

        # Oldest first: every open flag above this one was raised no later.
        order = db.execute(
            "SELECT id FROM privacy_flags WHERE state = 'open' ORDER BY flagged_at, id LIMIT 200"
        ).fetchall()
        shown = [int(i.removeprefix("flag-")) for i in page.locator("li.flag").evaluate_all("ns => ns.map(n => n.id)")]
        assert shown == [r[0] for r in order]

        # A note of blanks only: said in words, the flag stays open, the form keeps its place.
        card.get_by_text("Close this flag…").click()
        card.get_by_label("What you found").fill("   ")
        card.get_by_role("button", name="Close flag").click()
        expect(card.get_by_role("alert")).to_contain_text("Write what you found for the patient")
        assert db.execute("SELECT state FROM privacy_flags WHERE id = %s", (flag_id,)).fetchone() == ("open",)
        card.get_by_label("What you found").fill(OUTCOME)
        card.get_by_role("button", name="Close flag").click()
        page.wait_for_url(re.compile(rf".*/admin/privacy-flags\?done={flag_id}$"))
        expect(page.get_by_role("status")).to_have_text(
            f"Flag {flag_id} is closed. The patient can now read your note."
        )
        expect(page.locator(f"#flag-{flag_id}")).to_have_count(0)
        check_page(page, "admin-privacy-flags-closed")

        state = db.execute(
            "SELECT state, outcome_note, reviewed_by FROM privacy_flags WHERE id = %s", (flag_id,)
        ).fetchone()
        assert state == ("reviewed", OUTCOME, admin.id)
        reviews = db.execute(
            "SELECT outcome, patient_id FROM audit_events WHERE actor_id = %s AND action = 'review' "
            "AND resource = 'privacy_flag'",
            (admin.id,),
        ).fetchall()
        assert reviews == [("allowed", patient_id)]
        # The patient reads the outcome on their log.
        again = http.get("/api/v1/me/access-log", params={"role": "clinician"}, headers=mine).json()["items"]
        [entry] = [e for e in again if e["id"] == event["id"]]
        assert entry["flag"]["state"] == "reviewed"
        assert entry["flag"]["outcome_note"] == OUTCOME

    # A clinician: refused the page and the form, nothing listed, each refusal audited.
    refused = browser.new_context(viewport=PHONE, bypass_csp=True)
    try:
        other = refused.new_page()
        log_in(other, api_url, clinician)
        other.wait_for_url(f"{api_url}/workspace")
        expect(other.get_by_role("link", name="Privacy flags")).to_have_count(0)
        answer = other.goto(f"{api_url}/admin/privacy-flags")
        assert answer is not None
        assert answer.status == 403
        expect(other.get_by_role("heading", level=1)).to_have_text("Privacy flags")
        expect(other.get_by_text("This page is for the privacy officer (an admin account).")).to_be_visible()
        expect(other.get_by_text(NOTE)).to_have_count(0)
        check_page(other, "admin-privacy-flags-refused")
        csrf = next(c["value"] for c in refused.cookies() if c["name"] == "rpm_csrf")
        posted = other.request.post(
            f"{api_url}/admin/privacy-flags/{flag_id}/review",
            form={"csrf": csrf, "outcome_note": "Not mine to close."},
            max_redirects=0,
        )
        assert posted.status == 403
        assert "This page is for the privacy officer" in posted.text()
    finally:
        refused.close()
    denied = db.execute(
        "SELECT action, resource FROM audit_events WHERE actor_id = %s AND outcome = 'denied' ORDER BY id",
        (clinician.id,),
    ).fetchall()
    assert denied == [("read", "privacy_flags"), ("review", "privacy_flag")]
    assert db.execute("SELECT outcome_note FROM privacy_flags WHERE id = %s", (flag_id,)).fetchone() == (OUTCOME,)
