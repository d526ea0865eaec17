"""Who viewed my record in a real browser against a real API process (ADR 0025): a clinician
reads the patient's summary through the API, another one under break-glass; the patient, on a
phone-sized screen, sees both in plain words with name, role and the break-glass reason,
filters to doctors and nurses, and flags the first with a note; the privacy officer's queue has
it. axe-core on the page before and after; phone-sized screenshots in .rpm/screenshots/."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from tests.api.conftest import TestUser
from tests.api.support import PASSWORD
from tests.ui.test_pages_browser import PHONE, check_page, log_in

REASON = "Seen in the emergency room, no one from the care team on call"


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    # bypass_csp: only so that axe-core can be injected (the policy is tested elsewhere).
    ctx = browser.new_context(viewport=PHONE, bypass_csp=True)
    yield ctx
    ctx.close()


def bearer(http: httpx.Client, user: TestUser) -> dict[str, str]:
    token = http.post("/api/v1/auth/token", data={"username": user.username, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def test_the_patient_sees_the_clinicians_access_and_flags_it(
    context: BrowserContext,
    api_url: str,
    db: psycopg.Connection,
    make_user: Callable[..., TestUser],
    make_patient: Callable[[], str],
    make_care_team: Callable[..., object],
) -> None:
    patient_id = make_patient()
    patient = make_user("patient", patient_id=patient_id)
    clinician, outsider, admin = make_user("clinician"), make_user("clinician"), make_user("admin")
    db.execute("UPDATE users SET display_name = 'Dr Ada Lee' WHERE id = %s", (clinician.id,))
    db.execute("UPDATE users SET display_name = 'Dr Sam Oduya' WHERE id = %s", (outsider.id,))
    make_care_team([clinician], [patient_id])
    with httpx.Client(base_url=api_url, timeout=10) as http:
        summary = http.get(f"/api/v1/patients/{patient_id}/summary", headers=bearer(http, clinician))
        assert summary.status_code == 200, summary.text
        # A clinician outside the care team: emergency access with a reason, then the summary.
        emergency = bearer(http, outsider)
        grant = http.post(
            f"/api/v1/patients/{patient_id}/break-glass",
            json={"reason": REASON, "duration_minutes": 15},
            headers=emergency,
        )
        assert grant.status_code == 201, grant.text
        assert http.get(f"/api/v1/patients/{patient_id}/summary", headers=emergency).status_code == 200

        page = context.new_page()
        log_in(page, api_url, patient)
        page.wait_for_url(re.compile(r".*/me.*"))
        page.goto(f"{api_url}/me/access-log")
        expect(page.get_by_role("heading", level=1)).to_have_text("Who viewed my record")
        entry = page.locator("li.card").filter(has_text="Dr Ada Lee (doctor or nurse) looked at your summary.")
        expect(entry).to_have_count(1)
        expect(entry.get_by_text("Allowed")).to_be_visible()
        urgent = page.locator("li.card").filter(has_text="Dr Sam Oduya (doctor or nurse) looked at your summary.")
        expect(urgent.get_by_text(f"The reason they gave: {REASON}")).to_be_visible()
        check_page(page, "portal-access-log")

        # Filter to doctors and nurses: the access is still there.
        page.get_by_text("Choose what to see").click()
        page.get_by_label("Who", exact=True).select_option(label="Doctors and nurses")
        page.get_by_role("button", name="Show", exact=True).click()
        page.wait_for_url(re.compile(r".*who=clinician.*"))
        expect(entry).to_have_count(1)

        # "I don't recognise this": a note, then sent to the privacy team.
        entry.get_by_text("I don't recognise this").click()
        entry.get_by_label("Tell us more if you like").fill("I have never met this doctor.")
        entry.get_by_role("button", name="Send to the privacy team").click()
        page.wait_for_url(re.compile(r".*flagged=\d+.*"))
        expect(page.get_by_role("status")).to_contain_text("We sent this to our privacy team")
        flagged = page.locator("li.card").filter(has_text="Dr Ada Lee (doctor or nurse) looked at your summary.")
        expect(flagged.get_by_text("You said you don't recognise this.")).to_be_visible()
        expect(flagged.get_by_text("I don't recognise this", exact=True)).to_have_count(0)
        check_page(page, "portal-access-log-flagged")

        row = db.execute(
            "SELECT f.id, f.note, f.state, e.actor_id FROM privacy_flags AS f "
            "JOIN audit_events AS e ON e.id = f.audit_event_id WHERE f.patient_id = %s",
            (patient_id,),
        ).fetchall()
        assert [(note, state, actor) for _, note, state, actor in row] == [
            ("I have never met this doctor.", "open", clinician.id)
        ]
        queue = http.get(
            "/api/v1/admin/privacy-flags", params={"state": "open", "limit": 200}, headers=bearer(http, admin)
        )
        assert queue.status_code == 200, queue.text
        assert row[0][0] in [item["id"] for item in queue.json()["items"]]
