"""Sharing with the care team is enforced (ADR 0024; view `care_team_patients_shared` of
migration 0015): once a patient withdraws `share_care_team` through the API, a clinician of
their care team gets exactly what a clinician outside it gets (404 on every patient route, the
patient gone from my patients and the inbox, alert events not streamed) until they use
break-glass, which the patient then sees in their access log; an admin keeps access; giving
again restores it at once. A patient who never recorded a choice on the tier shares.
Notifications of the alert service: tests/alerts/test_alert_service.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import psycopg
import pytest

from api.app import create_app
from infra.stack import Stack
from tests.api.conftest import TestUser
from tests.api.support import assert_problem, raise_alert
from tests.api.test_alerts_stream import connected, events, next_event, token_of
from tests.api.test_careplans_devices_scope_matrix import patient_routes

pytestmark = pytest.mark.anyio

SHARE = "/api/v1/me/consents/share_care_team"
UNKNOWN = "no-such-patient-xyz"


@pytest.fixture
async def client(anyio_backend: str, settings_for: Any, serve: Any, stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(mqtt_admin_password=stack.secrets.mqtt_admin_password, kafka_idempotent_producer=False)
    async with serve(create_app(settings)) as http:
        yield http


def routes(patient_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every route that takes the patient's id, read-only ones and changes."""
    return [
        *patient_routes(patient_id),
        ("GET", f"/api/v1/patients/{patient_id}/consents", None),
        ("POST", f"/api/v1/patients/{patient_id}/consciousness", {"level": "A"}),
    ]


async def answers(client: httpx.AsyncClient, headers: dict[str, str], patient_id: str) -> list[tuple[int, str | None]]:
    out = []
    for method, path, body in routes(patient_id):
        response = await client.request(method, path, json=body, headers=headers)
        assert response.status_code < 500, response.text
        out.append((response.status_code, response.json().get("code")))
    return out


async def listed(client: httpx.AsyncClient, headers: dict[str, str], patient_id: str) -> tuple[bool, bool]:
    """(in my patients, in the inbox) for this patient."""
    patients = await client.get("/api/v1/patients", params={"limit": 200}, headers=headers)
    assert patients.status_code == 200, patients.text
    inbox = await client.get("/api/v1/alerts", params={"patient_id": patient_id}, headers=headers)
    assert inbox.status_code == 200, inbox.text
    return (
        patient_id in {p["patient_id"] for p in patients.json()["items"]},
        any(a["patient_id"] == patient_id for a in inbox.json()["items"]),
    )


@pytest.fixture
def ward(
    db: psycopg.Connection,
    make_patient: Callable[[], str],
    make_user: Callable[..., TestUser],
    make_care_team: Callable[..., uuid.UUID],
) -> dict[str, Any]:
    """A patient enrolled as enrolment records it (collection only), their care team's
    clinician, and a clinician and an admin outside it."""
    patient_id = make_patient()
    db.execute("INSERT INTO consents (patient_id, granted_at) VALUES (%s, now() - interval '30 days')", (patient_id,))
    clinician = make_user("clinician")
    make_care_team([clinician], [patient_id])
    return {
        "patient_id": patient_id,
        "patient": make_user("patient", patient_id=patient_id),
        "clinician": clinician,
        "outsider": make_user("clinician"),
        "admin": make_user("admin"),
        "alert": raise_alert(db, patient_id),
    }


async def test_withdrawing_sharing_takes_the_patient_from_the_care_team_until_given_again(
    client: httpx.AsyncClient, ward: dict[str, Any], auth_headers: Callable[[TestUser], dict[str, str]]
) -> None:
    patient_id, alert = ward["patient_id"], ward["alert"]
    clinician, outsider = auth_headers(ward["clinician"]), auth_headers(ward["outsider"])
    admin, patient = auth_headers(ward["admin"]), auth_headers(ward["patient"])

    # Enrolled before tiers: nothing recorded on sharing, which reads as given when they joined.
    mine = (await client.get("/api/v1/me/consents", headers=patient)).json()
    [share] = [t for t in mine["tiers"] if t["tier"] == "share_care_team"]
    [collect] = [t for t in mine["tiers"] if t["tier"] == "collect"]
    assert (share["state"], share["document_version"], share["enforced"]) == ("given", None, True)
    assert share["since"] == collect["since"]  # when they joined
    summary = await client.get(f"/api/v1/patients/{patient_id}/summary", headers=clinician)
    assert summary.status_code == 200, summary.text
    assert (await client.get(f"/api/v1/alerts/{alert}", headers=clinician)).status_code == 200
    assert await listed(client, clinician, patient_id) == (True, True)
    outside = await answers(client, outsider, patient_id)
    assert {status for status, _ in outside} == {404}
    assert outside == await answers(client, outsider, UNKNOWN)

    withdrawn = await client.post(SHARE, json={"action": "withdraw"}, headers=patient)
    assert withdrawn.status_code == 200, withdrawn.text
    body = withdrawn.json()
    [share] = [t for t in body["tiers"] if t["tier"] == "share_care_team"]
    assert (share["state"], share["document_version"]) == ("withdrawn", None)
    # The enrolment grant is written down as it stood (no version, from when they joined) and closed.
    assert [(e["tier"], e["action"], e["document_version"]) for e in body["history"]] == [
        ("share_care_team", "withdrawn", None),
        ("share_care_team", "given", None),
        ("collect", "given", None),
    ]
    assert body["history"][1]["at"] == collect["since"]
    assert_problem(await client.post(SHARE, json={"action": "withdraw"}, headers=patient), 409, "not_given")

    # The care team's clinician now answers exactly like the clinician outside the team.
    assert await answers(client, clinician, patient_id) == outside
    assert_problem(await client.get(f"/api/v1/alerts/{alert}", headers=clinician), 404, "alert_not_found")
    assert await listed(client, clinician, patient_id) == (False, False)
    # The admin keeps access; the patient reads their own record.
    assert (await client.get(f"/api/v1/patients/{patient_id}/summary", headers=admin)).status_code == 200
    inbox = await client.get("/api/v1/alerts", params={"patient_id": patient_id}, headers=admin)
    assert [a["id"] for a in inbox.json()["items"]] == [alert]
    assert (await client.get(f"/api/v1/patients/{patient_id}/summary", headers=patient)).status_code == 200

    # Break-glass still opens the record, and the patient sees it in "who viewed my record".
    grant = await client.post(
        f"/api/v1/patients/{patient_id}/break-glass", json={"reason": "found unwell at home"}, headers=clinician
    )
    assert grant.status_code == 201, grant.text
    assert (await client.get(f"/api/v1/patients/{patient_id}/summary", headers=clinician)).status_code == 200
    log = await client.get("/api/v1/me/access-log", params={"break_glass": "true"}, headers=patient)
    assert log.status_code == 200, log.text
    seen = {(e["who"]["name"], e["who"]["role"]) for e in log.json()["items"]}
    assert seen == {("Test clinician", "clinician")}, seen
    # Under break-glass the patient is still not on the care team's lists.
    assert await listed(client, clinician, patient_id) == (False, False)

    # Giving again restores the care team's access at once (the outsider's grant aside).
    given = await client.post(SHARE, json={"action": "give", "document_version": "share_care_team-v1"}, headers=patient)
    assert given.status_code == 200, given.text
    assert await listed(client, clinician, patient_id) == (True, True)
    back = await client.post(
        f"/api/v1/patients/{patient_id}/break-glass", json={"reason": "found unwell at home"}, headers=clinician
    )
    assert_problem(back, 409, "break_glass_not_needed")
    assert {status for status, _ in await answers(client, outsider, patient_id)} == {404}


@pytest.fixture(scope="module")
def api_url(stack: Stack) -> str:
    stack.start(["api"])
    return f"http://127.0.0.1:{stack.ports.api}"


async def test_open_alert_streams_stop_sending_a_patients_events_once_sharing_is_withdrawn(
    api_url: str,
    db: psycopg.Connection,
    make_patient: Callable[[], str],
    make_user: Callable[..., TestUser],
    make_care_team: Callable[..., uuid.UUID],
) -> None:
    withdrawing, sharing = make_patient(), make_patient()
    clinician = make_user("clinician")
    make_care_team([clinician], [withdrawing, sharing])
    patient = make_user("patient", patient_id=withdrawing)
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        headers = {"Authorization": f"Bearer {await token_of(http, clinician)}", "Accept": "text/event-stream"}
        patient_headers = {"Authorization": f"Bearer {await token_of(http, patient)}"}
        async with http.stream("GET", "/api/v1/alerts/stream", headers=headers) as response:
            assert response.status_code == 200
            stream = events(response)
            await connected(stream)
            raise_alert(db, withdrawing)
            assert (await next_event(stream))["patient_id"] == withdrawing  # in scope while sharing
            answer = await http.post(SHARE, json={"action": "withdraw"}, headers=patient_headers)
            assert answer.status_code == 200, answer.text
            # The withdrawn patient's alert first: were it sent, it would be the next event.
            raise_alert(db, withdrawing, rule="news2_medium", severity="medium")
            shared_alert = raise_alert(db, sharing)
            event = await next_event(stream)
            assert (event["patient_id"], event["alert_id"]) == (sharing, shared_alert)
