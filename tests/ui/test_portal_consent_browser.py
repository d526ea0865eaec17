"""The consent page `/me/consent` in a real browser on a phone-sized viewport: a patient reads
each tier in plain words, withdraws collection, sees the new state and the history; axe-core
finds no serious or critical violation; screenshots go to .rpm/screenshots/. End to end: after
withdrawing on the page, the patient's device is refused `no_consent` by the real bridge within
the bound (ADR 0024)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
from playwright.sync_api import BrowserContext, expect

from core.clients.provisioning import DeviceCredentials
from infra.stack import Stack
from tests.api.conftest import TestUser
from tests.helpers import Device, create_patient, provision
from tests.ingest.test_bridge import ingest_metric
from tests.portal.test_consent_bridge import (
    NO_CONSENT,
    assert_refused_not_stored,
    first_reading,
    off_loop,
    publish_until_refused,
)
from tests.ui.test_pages_browser import check_page, context, log_in  # noqa: F401 - context is a fixture

COLLECT = "Collect my health readings"
SHARE = "Share my data with my care team"


def test_a_patient_withdraws_collection_on_a_phone(
    context: BrowserContext,  # noqa: F811 - the fixture imported above
    api_url: str,
    db: psycopg.Connection,
    make_user: Callable[..., TestUser],
    make_patient: Callable[[], str],
) -> None:
    patient_id = make_patient()
    db.execute(
        "INSERT INTO consents (patient_id, granted_at) VALUES (%s, %s)",
        (patient_id, datetime.now(UTC) - timedelta(days=30)),
    )
    patient = make_user("patient", patient_id=patient_id)
    page = context.new_page()
    log_in(page, api_url, patient)
    page.wait_for_url(f"{api_url}/me*")
    page.goto(f"{api_url}/me/consent")
    expect(page.get_by_role("heading", level=1)).to_have_text("My consent")
    collect = page.locator("#consent-collect")
    expect(collect.get_by_role("heading", level=2)).to_have_text(COLLECT)
    expect(collect).to_contain_text("You said yes on")
    expect(collect).to_contain_text("The readings we already have stay in your record.")
    # Enrolled before tiers: sharing was agreed to when the patient joined (ADR 0024).
    expect(page.locator("#consent-share_care_team")).to_contain_text("You said yes when you joined the program.")
    expect(page.locator("#consent-research")).to_contain_text("You have not said yes to this.")
    expect(page.get_by_role("link", name="Consent")).to_have_attribute("aria-current", "page")
    check_page(page, "portal-consent")

    # Saying no to collection asks once more; going back saves nothing.
    page.get_by_role("button", name=f"Say no to: {COLLECT}").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Stop collecting your readings?")
    expect(page.get_by_role("main")).to_contain_text("The readings we already have stay in your record.")
    check_page(page, "portal-consent-confirm")
    page.get_by_role("link", name="No, go back").click()
    expect(page.locator("#consent-collect")).to_contain_text("You said yes on")
    page.get_by_role("button", name=f"Say no to: {COLLECT}").click()
    page.get_by_role("button", name="Yes, stop collecting").click()
    page.wait_for_url(f"{api_url}/me/consent?done=withdrawn&tier=collect")
    expect(page.get_by_role("status")).to_have_text(f"We saved your choice: no to {COLLECT}.")
    expect(collect).to_contain_text("You said no on")
    expect(page.get_by_role("button", name=f"Say yes to: {COLLECT}")).to_be_visible()
    history = page.locator("table tbody tr")
    expect(history).to_have_count(2)
    expect(history.first).to_contain_text(f"No to: {COLLECT}")
    expect(history.last).to_contain_text(f"Yes to: {COLLECT}")
    expect(history.last).to_contain_text("When you joined")
    check_page(page, "portal-consent-withdrawn")
    row = db.execute(
        "SELECT count(*) FILTER (WHERE withdrawn_at IS NULL), count(*) FROM consents WHERE patient_id = %s",
        (patient_id,),
    ).fetchone()
    assert row == (0, 1)

    # Saying yes again, with the keyboard only, opens a new grant to the current document.
    page.get_by_role("button", name=f"Say yes to: {COLLECT}").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"{api_url}/me/consent?done=given&tier=collect")
    expect(page.get_by_role("status")).to_have_text(f"Thank you. We saved your choice: yes to {COLLECT}.")
    expect(history).to_have_count(3)
    expect(history.first).to_contain_text("collect-v1")
    versions = db.execute(
        "SELECT document_version FROM consents WHERE patient_id = %s AND withdrawn_at IS NULL", (patient_id,)
    ).fetchall()
    assert versions == [("collect-v1",)]


def test_a_patient_stops_sharing_with_their_care_team_after_one_more_look(
    context: BrowserContext,  # noqa: F811 - the fixture imported above
    api_url: str,
    db: psycopg.Connection,
    make_user: Callable[..., TestUser],
    make_patient: Callable[[], str],
    make_care_team: Callable[..., object],
) -> None:
    patient_id = make_patient()
    db.execute(
        "INSERT INTO consents (patient_id, granted_at) VALUES (%s, %s)",
        (patient_id, datetime.now(UTC) - timedelta(days=30)),
    )
    patient = make_user("patient", patient_id=patient_id)
    clinician = make_user("clinician")
    make_care_team([clinician], [patient_id])
    page = context.new_page()
    log_in(page, api_url, patient)
    page.wait_for_url(f"{api_url}/me*")
    page.goto(f"{api_url}/me/consent")
    share = page.locator("#consent-share_care_team")
    expect(share).to_contain_text("You said yes when you joined the program.")
    expect(share).not_to_contain_text("still see your record")

    # Saying no asks once more, in plain words; going back saves nothing.
    page.get_by_role("button", name=f"Say no to: {SHARE}").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Stop sharing with your care team?")
    main = page.get_by_role("main")
    for words in (
        "Your care team will no longer see your readings.",
        "They will not be told when a reading is outside your limits.",
        "Your devices still send readings unless you also stop collecting.",
        "In an emergency, a doctor or nurse can still open your record.",
        'You will see that in "Who viewed my record".',
        "You can share again at any time.",
    ):
        expect(main).to_contain_text(words)
    check_page(page, "portal-consent-share-confirm")
    page.get_by_role("link", name="No, go back").click()
    expect(share).to_contain_text("You said yes when you joined the program.")
    assert db.execute("SELECT count(*) FROM consents WHERE patient_id = %s", (patient_id,)).fetchone() == (1,)

    page.get_by_role("button", name=f"Say no to: {SHARE}").click()
    page.get_by_role("button", name="Yes, stop sharing").click()
    page.wait_for_url(f"{api_url}/me/consent?done=withdrawn&tier=share_care_team")
    expect(page.get_by_role("status")).to_have_text(f"We saved your choice: no to {SHARE}.")
    expect(share).to_contain_text("You said no on")
    history = page.locator("table tbody tr")
    expect(history).to_have_count(3)
    expect(history.nth(0)).to_contain_text(f"No to: {SHARE}")
    expect(history.nth(1)).to_contain_text(f"Yes to: {SHARE}")
    expect(history.nth(1)).to_contain_text("When you joined")
    check_page(page, "portal-consent-share-withdrawn")
    # The care team no longer reaches the record (the rule's view, migration 0015).
    row = db.execute("SELECT count(*) FROM care_team_patients_shared WHERE patient_id = %s", (patient_id,)).fetchone()
    assert row == (0,)

    # Sharing again is one click, and the care team is back at once.
    page.get_by_role("button", name=f"Say yes to: {SHARE}").click()
    page.wait_for_url(f"{api_url}/me/consent?done=given&tier=share_care_team")
    expect(share).to_contain_text("You said yes on")
    row = db.execute("SELECT count(*) FROM care_team_patients_shared WHERE patient_id = %s", (patient_id,)).fetchone()
    assert row == (1,)


def test_a_form_from_elsewhere_changes_nothing(
    context: BrowserContext,  # noqa: F811 - the fixture imported above
    api_url: str,
    db: psycopg.Connection,
    make_user: Callable[..., TestUser],
    make_patient: Callable[[], str],
) -> None:
    patient_id = make_patient()
    patient = make_user("patient", patient_id=patient_id)
    page = context.new_page()
    log_in(page, api_url, patient)
    page.wait_for_url(f"{api_url}/me*")
    answer = page.request.post(
        f"{api_url}/me/consent/research",
        form={"csrf": "not-the-token-of-this-session", "action": "give", "document_version": "research-v1"},
    )
    assert answer.status == 403
    assert "out of date" in answer.text()
    row = db.execute("SELECT count(*) FROM consents WHERE patient_id = %s", (patient_id,)).fetchone()
    assert row == (0,)
    # A page opened before the text changed names an older version: nothing is saved, and the
    # page asks to read the text again.
    page.goto(f"{api_url}/me/consent")
    csrf = next(c["value"] for c in context.cookies() if c["name"] == "rpm_csrf")
    stale = page.request.post(
        f"{api_url}/me/consent/research",
        form={"csrf": csrf, "action": "give", "document_version": "research-v0"},
        max_redirects=0,
    )
    assert stale.status == 303
    assert stale.headers["location"] == "/me/consent?error=unknown_document_version"
    page.goto(f"{api_url}{stale.headers['location']}")
    expect(page.get_by_role("alert")).to_have_text(
        "The text has changed since you opened the page. Please read it again."
    )
    row = db.execute("SELECT count(*) FROM consents WHERE patient_id = %s", (patient_id,)).fetchone()
    assert row == (0,)


def test_withdrawing_on_the_page_stops_the_patients_device(
    context: BrowserContext,  # noqa: F811 - the fixture imported above
    api_url: str,
    stack: Stack,
    db: psycopg.Connection,
    make_user: Callable[..., TestUser],
) -> None:
    # The bridge and the worker of the session's stack (the page's API is already running);
    # started off this thread, where the Playwright driver keeps its event loop.
    off_loop(stack.start, ["ingest", "streams"])
    patient_id = create_patient(db)
    patient = make_user("patient", patient_id=patient_id)
    creds = off_loop(provision, stack, patient_id)
    assert isinstance(creds, DeviceCredentials)
    device = Device(stack, creds.username, creds.password)
    device.connect()
    try:
        first_reading(db, device, patient_id)
        page = context.new_page()
        log_in(page, api_url, patient)
        page.wait_for_url(f"{api_url}/me*")
        page.goto(f"{api_url}/me/consent")
        counted_before = ingest_metric(stack, NO_CONSENT)
        page.get_by_role("button", name=f"Say no to: {COLLECT}").click()
        page.get_by_role("button", name="Yes, stop collecting").click()
        page.wait_for_url(f"{api_url}/me/consent?done=withdrawn&tier=collect")
        withdrawn_at = time.monotonic()
        expect(page.locator("#consent-collect")).to_contain_text("You said no on")

        sent, refused_from = publish_until_refused(stack, device, withdrawn_at, counted_before)
        assert_refused_not_stored(stack, db, patient_id, device, sent, refused_from, counted_before)
    finally:
        device.close()
