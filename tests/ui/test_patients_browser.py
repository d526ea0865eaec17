"""My patients and the patient summary in a real browser against real processes: the patient
with an open alert (raised by the alert service from a published detection) comes first, with
its NEWS2 and the parameter it could not score; a wearable that stopped sending is marked
silent; the patient page shows NEWS2, the open alert linked to the inbox and the devices with
their last reading. axe-core on both pages; phone-sized screenshots in .rpm/screenshots/."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from infra.stack import Stack
from tests.api.conftest import TestUser
from tests.helpers import unique
from tests.ui.test_inbox_browser import hypoxia, publish
from tests.ui.test_pages_browser import PHONE, check_page, log_in


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    # bypass_csp: only so that axe-core can be injected (the policy is tested elsewhere).
    ctx = browser.new_context(viewport=PHONE, bypass_csp=True)
    yield ctx
    ctx.close()


def bind_device(db: psycopg.Connection, patient_id: str, device_class: str) -> str:
    device_id = unique(device_class.replace("_", "-"))
    db.execute("INSERT INTO devices (id, device_class) VALUES (%s, %s)", (device_id, device_class))
    db.execute(
        "INSERT INTO device_bindings (device_id, patient_id, valid_from) VALUES (%s, %s, now() - interval '2 days')",
        (device_id, patient_id),
    )
    return device_id


def test_my_patients_then_the_patient_summary(
    context: BrowserContext,
    api_url: str,
    stack: Stack,
    db: psycopg.Connection,
    make_user: Callable[..., TestUser],
    make_patient: Callable[[], str],
    make_care_team: Callable[..., object],
    add_observations: Callable[..., None],
) -> None:
    stack.start_alerts()
    clinician = make_user("clinician")
    quiet, alerting = make_patient(), make_patient()
    make_care_team([clinician], [quiet, alerting])
    now = datetime.now(UTC)
    # The quiet patient's wearable last sent two hours ago: past its 15 min warn time.
    wearable = bind_device(db, quiet, "wearable")
    add_observations(quiet, "heart_rate", [(now - timedelta(hours=2), 70.0)], device_id=wearable)
    # The other one's oximeter sent five minutes ago: SpO2 88 (3), pulse 95 (1), respiration 22 (2),
    # temperature 37.0 (0), systolic 120 (0), on air (0): NEWS2 6, medium risk; consciousness not reported.
    oximeter = bind_device(db, alerting, "pulse_oximeter")
    at = now - timedelta(minutes=5)
    for metric, value in (("spo2", 88.0), ("heart_rate", 95.0), ("resp_rate", 22.0), ("body_temp", 37.0)):
        add_observations(alerting, metric, [(at, value)], device_id=oximeter)
    add_observations(alerting, "bp_systolic", [(at, 120.0)], device_id=oximeter)
    publish(stack, hypoxia(alerting))
    deadline = time.monotonic() + 60
    while db.execute("SELECT 1 FROM alerts WHERE patient_id = %s", (alerting,)).fetchone() is None:
        assert time.monotonic() < deadline, "the alert service did not open the alert within 60 s"
        time.sleep(0.25)

    page = context.new_page()
    log_in(page, api_url, clinician)
    page.wait_for_url(f"{api_url}/workspace")
    page.get_by_role("link", name="My patients", exact=True).first.click()
    page.wait_for_url(f"{api_url}/patients")
    cards = page.locator(".patient-list > li")
    expect(cards).to_have_count(2)
    first, second = cards.nth(0), cards.nth(1)
    expect(first).to_contain_text(f"Patient {alerting}")
    expect(first).to_contain_text("High 1 open: Spo2 low")
    expect(first).to_contain_text("6 (medium risk)")
    expect(first).to_contain_text(f"Pulse oximeter {oximeter}: last reading 5 min ago")
    expect(first.locator(".silent")).to_have_count(0)
    expect(second).to_contain_text(f"Patient {quiet}")
    expect(second).to_contain_text("Open alerts None")
    expect(second).to_contain_text(f"Wearable {wearable}: last reading 2 h 0 min ago Silent")
    check_page(page, "patients")

    first.get_by_role("link", name=f"Patient {alerting}").click()
    page.wait_for_url(f"{api_url}/patients/{alerting}")
    news2 = page.get_by_role("region", name="NEWS2")
    expect(news2).to_contain_text("6")
    expect(news2).to_contain_text("6 · medium risk")
    expect(news2).to_contain_text("Not scored (no recent reading): consciousness (ACVPU).")
    alerts = page.get_by_role("region", name="Open alerts")
    expect(alerts).to_contain_text("High Spo2 low")
    expect(alerts.get_by_role("link", name="Act on them in the inbox")).to_have_attribute("href", "/inbox")
    expect(page.get_by_role("region", name="Devices")).to_contain_text(
        f"Pulse oximeter {oximeter}: last seen 5 min ago"
    )
    check_page(page, "patient-summary")
