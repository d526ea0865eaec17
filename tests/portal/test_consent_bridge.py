"""Withdrawing `collect` through the API stops the real bridge taking the patient's readings
within the stated bound (ADR 0024: COLLECT_STOP_WITHIN_S): a device of the patient keeps
publishing after the withdrawal; from the first reading the bridge refuses, every reading is
dead-lettered `no_consent`, counted, and never stored; what was stored before stays.

`publish_until_refused` and `assert_refused_not_stored` are shared with the browser test
(tests/ui/test_portal_consent_browser.py), which withdraws on the page instead."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from api.consents.service import COLLECT_STOP_WITHIN_S
from infra.stack import Stack
from tests.api.conftest import TestUser
from tests.api.support import PASSWORD
from tests.helpers import Device, count_rows, create_patient, provision, reading, wait_for
from tests.ingest.test_bridge import dead_letters, ingest_metric

NO_CONSENT = 'rpm_ingest_rejected_total{reason="no_consent"}'
# One reading every half second: the bound is measured to about that.
EVERY_S = 0.5


def off_loop(fn: Callable[..., object], *args: object) -> object:
    """Run `fn` in a thread of its own: it may call asyncio.run() even where a synchronous
    Playwright driver keeps an event loop in this thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


def first_reading(db: psycopg.Connection, device: Device, patient_id: str) -> None:
    """Before the withdrawal: a reading is taken and stored."""
    ts = datetime.now(UTC) - timedelta(seconds=30)
    assert device.send(1, [reading("heart_rate", 70, "/min", ts)]).value < 0x80
    assert wait_for(lambda: count_rows(db, patient_id) == 1, timeout=60)


def publish_until_refused(
    stack: Stack, device: Device, withdrawn_at: float, counted_before: float
) -> tuple[dict[int, float], int]:
    """One reading every half second from seq 2 until the bridge refuses one, then three more.
    Returns seq -> seconds after the withdrawal it was sent, and the first refused seq."""
    sent: dict[int, float] = {}
    refused_from: int | None = None
    seq, extra = 1, 0
    while extra < 3:
        seq += 1
        ts = datetime.now(UTC) - timedelta(seconds=1)
        assert device.send(seq, [reading("heart_rate", 70 + seq % 20, "/min", ts)]).value < 0x80
        sent[seq] = time.monotonic() - withdrawn_at
        if refused_from is None:
            # The PUBACK comes after the bridge judged the message: a refusal is counted by now.
            if ingest_metric(stack, NO_CONSENT) > counted_before:
                refused_from = seq
            else:
                assert sent[seq] <= COLLECT_STOP_WITHIN_S + 2 * EVERY_S, "no refusal within the bound"
                time.sleep(EVERY_S)
        else:
            extra += 1
    assert refused_from is not None
    return sent, refused_from


def assert_refused_not_stored(
    stack: Stack,
    db: psycopg.Connection,
    patient_id: str,
    device: Device,
    sent: dict[int, float],
    refused_from: int,
    counted_before: float,
) -> None:
    accepted = [s for s in sent if s < refused_from]
    refused = [s for s in sent if s >= refused_from]
    letters = off_loop(dead_letters, stack, device.username, len(refused))
    assert isinstance(letters, list)
    assert sorted(json.loads(letter.payload)["seq"] for letter in letters) == refused
    assert {letter.reason for letter in letters} == {"no_consent"}
    assert ingest_metric(stack, NO_CONSENT) == counted_before + len(refused)
    # The bound: the first refused reading was sent within it.
    assert sent[refused_from] <= COLLECT_STOP_WITHIN_S
    print(
        f"collect withdrawn: first refused reading {sent[refused_from]:.2f} s after the withdrawal "
        f"({len(accepted)} accepted before it; bound {COLLECT_STOP_WITHIN_S} s)"
    )
    # What was stored stays; what was accepted in the window is stored; nothing refused is.
    assert wait_for(lambda: count_rows(db, patient_id) == 1 + len(accepted), timeout=60)
    stored = db.execute(
        "SELECT count(*) FROM observations WHERE patient_id = %s AND seq >= %s", (patient_id, refused_from)
    ).fetchone()
    assert stored == (0,)


def test_withdrawing_collect_stops_the_bridge_within_the_bound(
    platform: Stack, db: psycopg.Connection, make_user: Callable[..., TestUser]
) -> None:
    patient_id = create_patient(db)
    patient = make_user("patient", patient_id=patient_id)
    creds = provision(platform, patient_id)
    device = Device(platform, creds.username, creds.password)
    device.connect()
    api = httpx.Client(base_url=f"http://127.0.0.1:{platform.ports.api}", timeout=10)
    try:
        first_reading(db, device, patient_id)
        token = api.post("/api/v1/auth/token", data={"username": patient.username, "password": PASSWORD})
        assert token.status_code == 200, token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        counted_before = ingest_metric(platform, NO_CONSENT)
        withdrawn = api.post("/api/v1/me/consents/collect", json={"action": "withdraw"}, headers=headers)
        assert withdrawn.status_code == 200, withdrawn.text
        withdrawn_at = time.monotonic()

        sent, refused_from = publish_until_refused(platform, device, withdrawn_at, counted_before)
        assert_refused_not_stored(platform, db, patient_id, device, sent, refused_from, counted_before)
    finally:
        device.close()
        api.close()
