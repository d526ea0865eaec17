"""Withdrawing `collect` through the API stops the real bridge taking the patient's readings
within the stated bound (ADR 0024: COLLECT_STOP_WITHIN_S): a device of the patient keeps
publishing after the withdrawal; from the first reading the bridge refuses, every reading is
dead-lettered `no_consent`, counted, and never stored; what was stored before stays."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
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
        # Before: a reading is taken and stored.
        seq = 1
        assert (
            device.send(seq, [reading("heart_rate", 70, "/min", datetime.now(UTC) - timedelta(seconds=30))]).value
            < 0x80
        )
        assert wait_for(lambda: count_rows(db, patient_id) == 1, timeout=60)

        token = api.post("/api/v1/auth/token", data={"username": patient.username, "password": PASSWORD})
        assert token.status_code == 200, token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        counted_before = ingest_metric(platform, NO_CONSENT)
        withdrawn = api.post("/api/v1/me/consents/collect", json={"action": "withdraw"}, headers=headers)
        assert withdrawn.status_code == 200, withdrawn.text
        withdrawn_at = time.monotonic()

        # After: one reading every half second until the bridge refuses one, then three more.
        sent: dict[int, float] = {}  # seq -> seconds after the withdrawal
        refused_from: int | None = None
        extra = 0
        while extra < 3:
            seq += 1
            ts = datetime.now(UTC) - timedelta(seconds=1)
            assert device.send(seq, [reading("heart_rate", 70 + seq % 20, "/min", ts)]).value < 0x80
            sent[seq] = time.monotonic() - withdrawn_at
            if refused_from is None:
                # The PUBACK comes after the bridge judged the message: a refusal is counted by now.
                if ingest_metric(platform, NO_CONSENT) > counted_before:
                    refused_from = seq
                else:
                    assert sent[seq] <= COLLECT_STOP_WITHIN_S + 2 * EVERY_S, "no refusal within the bound"
                    time.sleep(EVERY_S)
            else:
                extra += 1
        assert refused_from is not None
        accepted = [s for s in sent if s < refused_from]
        refused = [s for s in sent if s >= refused_from]
        letters = dead_letters(platform, creds.device_id, len(refused))
        assert sorted(json.loads(letter.payload)["seq"] for letter in letters) == refused
        assert {letter.reason for letter in letters} == {"no_consent"}
        assert ingest_metric(platform, NO_CONSENT) == counted_before + len(refused)
        # Measured bound: the last accepted reading was sent before it, the first refused one after.
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
    finally:
        device.close()
        api.close()
