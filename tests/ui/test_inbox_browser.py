"""The inbox in a real browser against real processes: a clinician logs in and opens the
inbox; a detection published to `rpm.detections.v1` becomes an alert in the alert service
(`python -m alerts`) and appears in the open page without a reload (alert stream, SSE); the
clinician acknowledges it (a second open inbox sees the state change live) and resolves it with
a disposition; the state survives a reload and is in the database with its history. axe-core
finds no serious or critical violation; phone-sized screenshots go to .rpm/screenshots/."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, expect, sync_playwright

from core.wire import DETECTIONS, DetectionRecord, encode
from infra.stack import Stack
from tests.api.conftest import TestUser
from tests.streams.support import produce
from tests.ui.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.ui.test_pages_browser import PHONE, check_page, log_in

LIVE_TIMEOUT_MS = 60_000  # the alert service's consumer may still be joining its group


@pytest.fixture(scope="module")
def browser(api_url: str) -> Iterator[Browser]:
    """A browser of this module's own: the sync driver keeps an event loop running in this
    thread while it is open, and tests/ui/test_page_session.py (after this file) runs async
    tests that need the thread's loop to themselves. It is closed when this module ends."""
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    # bypass_csp only so that axe-core can be injected; inbox.js itself runs under the page's
    # policy in test_live_updates_run_under_the_pages_own_csp.
    ctx = browser.new_context(viewport=PHONE, bypass_csp=True)
    yield ctx
    ctx.close()


@pytest.fixture(scope="module")
def alert_service(stack: Stack) -> Stack:
    stack.start_alerts()
    return stack


def publish(stack: Stack, record: DetectionRecord) -> None:
    """Produce on a thread of its own: Playwright's sync driver owns this thread's event loop."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(produce(stack.kafka_bootstrap, [(record.patient_id, encode(record))], topic=DETECTIONS.name))
        except BaseException as error:  # re-raised in the test's thread
            failure.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "producing the detection took over 60 s"
    if failure:
        raise failure[0]


def hypoxia(patient_id: str) -> DetectionRecord:
    now = datetime.now(UTC)
    return DetectionRecord(
        detection_id=str(uuid.uuid4()),
        patient_id=patient_id,
        rule="spo2_low",
        severity="high",
        kind="raise",
        detected_at=now,
        episode_start=now,
        evidence={"value": 87, "threshold": 90},
        produced_at=now,
    )


def test_an_alert_arrives_live_is_acknowledged_and_resolved(
    context: BrowserContext,
    api_url: str,
    alert_service: Stack,
    db: psycopg.Connection,
    make_user: Callable[..., TestUser],
    make_patient: Callable[[], str],
    make_care_team: Callable[..., object],
) -> None:
    clinician = make_user("clinician")
    patient_id = make_patient()
    make_care_team([clinician], [patient_id])

    page = context.new_page()
    log_in(page, api_url, clinician)
    page.wait_for_url(f"{api_url}/workspace")
    page.get_by_role("link", name="Inbox", exact=True).first.click()
    page.wait_for_url(f"{api_url}/inbox")
    expect(page.get_by_text("No alerts match this filter.")).to_be_visible()
    expect(page.locator("#live-connection")).to_contain_text("Live", timeout=LIVE_TIMEOUT_MS)
    check_page(page, "inbox-empty")
    # A second inbox, to see another clinician's action arrive live.
    watcher = context.new_page()
    watcher.goto(f"{api_url}/inbox")
    expect(watcher.locator("#live-connection")).to_contain_text("Live", timeout=LIVE_TIMEOUT_MS)
    page.evaluate("window.notReloaded = true")

    publish(alert_service, hypoxia(patient_id))
    card = page.locator("[data-alert-id]")
    expect(card).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(card).to_contain_text(f"Patient {patient_id}")
    expect(card).to_contain_text("High")
    expect(card).to_contain_text("Open")
    expect(page.locator("#live-status")).to_contain_text("New alert: high")
    assert page.evaluate("window.notReloaded") is True  # it came without a reload
    expect(watcher.locator("[data-alert-id]")).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    check_page(page, "inbox")

    card.get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_role("status").filter(has_text="acknowledged")).to_be_visible()
    expect(page.locator("[data-alert-id]")).to_contain_text("Acknowledged")
    # The other open inbox shows the new state without a reload.
    expect(watcher.locator("[data-alert-id]")).to_contain_text("Acknowledged", timeout=LIVE_TIMEOUT_MS)

    # "Other" without a note is refused in words; nothing changes.
    card = page.locator("[data-alert-id]")
    card.get_by_text("Resolve…").click()
    card.get_by_label("Other (say why in the note)").check()
    card.get_by_role("button", name="Resolve").click()
    expect(page.get_by_role("alert")).to_contain_text("“Other” needs a note")
    check_page(page, "inbox-error")

    # This time with the keyboard only.
    card = page.locator("[data-alert-id]")
    card.get_by_text("Resolve…").focus()
    page.keyboard.press("Enter")
    card.get_by_label("Actionable", exact=True).focus()
    page.keyboard.press("Space")
    expect(card.get_by_label("Actionable", exact=True)).to_be_checked()
    card.get_by_role("textbox", name="Note").focus()
    page.keyboard.type("Called the patient; oxygen adjusted.")
    page.keyboard.press("Tab")
    expect(card.get_by_role("button", name="Resolve")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").filter(has_text="resolved")).to_be_visible()
    expect(page.locator("[data-alert-id]")).to_have_count(0)  # the default view hides resolved alerts
    expect(watcher.locator("[data-alert-id]")).to_have_count(0, timeout=LIVE_TIMEOUT_MS)

    # The state survives a reload, and the history names the clinician.
    page.goto(f"{api_url}/inbox?state=resolved")
    page.reload()
    card = page.locator("[data-alert-id]")
    expect(card).to_have_count(1)
    expect(card).to_contain_text("Resolved")
    expect(card).to_contain_text("Actionable")
    check_page(page, "inbox-resolved")
    row = db.execute(
        "SELECT state, disposition, resolution_note, acknowledged_by, resolved_by FROM alerts WHERE patient_id = %s",
        (patient_id,),
    ).fetchone()
    assert row == ("resolved", "actionable", "Called the patient; oxygen adjusted.", clinician.id, clinician.id)
    kinds = [
        r[0]
        for r in db.execute(
            "SELECT e.kind FROM alert_events e JOIN alerts a ON a.id = e.alert_id "
            "WHERE a.patient_id = %s AND e.actor_id = %s ORDER BY e.id",
            (patient_id, clinician.id),
        ).fetchall()
    ]
    assert kinds == ["acknowledged", "resolved"]

    # The alert's own page (where e-mails and webhooks link to) tells its history in words.
    alert_id = card.get_attribute("data-alert-id")
    page.goto(f"{api_url}/alerts/{alert_id}")
    expect(page.get_by_role("heading", name="Alert", exact=True)).to_be_visible()
    history = page.locator("ol.history li")
    expect(history.first).to_contain_text("Opened by the platform")
    expect(page.locator("ol.history")).to_contain_text("Acknowledged by you")
    expect(page.locator("ol.history")).to_contain_text("Resolved by you")
    expect(page.locator("[data-alert-id]")).to_contain_text("Actionable")
    check_page(page, "alert")
    missing = page.goto(f"{api_url}/alerts/{uuid.uuid4()}")
    assert missing is not None
    assert missing.status == 404
    expect(page.get_by_role("heading", name="Alert not found")).to_be_visible()

    # A form post without the page's CSRF token is refused in words and changes nothing.
    forged = page.request.post(f"{api_url}/inbox/{alert_id}/acknowledge", form={"csrf": "not-the-token"})
    assert forged.status == 403
    assert "did not come from this site" in forged.text()
    assert db.execute("SELECT state FROM alerts WHERE id = %s", (alert_id,)).fetchone() == ("resolved",)


def test_live_updates_run_under_the_pages_own_csp(
    browser: Browser,
    api_url: str,
    alert_service: Stack,
    make_user: Callable[..., TestUser],
    make_patient: Callable[[], str],
    make_care_team: Callable[..., object],
) -> None:
    # No CSP bypass: inbox.js is loaded from /static and opens the stream under the page's policy.
    clinician = make_user("clinician")
    patient_id = make_patient()
    make_care_team([clinician], [patient_id])
    ctx = browser.new_context(viewport=PHONE)
    try:
        page = ctx.new_page()
        refused: list[str] = []
        page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
        log_in(page, api_url, clinician)
        page.wait_for_url(f"{api_url}/workspace")
        page.goto(f"{api_url}/inbox")
        expect(page.locator("#live-connection")).to_contain_text("Live", timeout=LIVE_TIMEOUT_MS)
        publish(alert_service, hypoxia(patient_id))
        expect(page.locator("[data-alert-id]")).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
        assert refused == []
    finally:
        ctx.close()
