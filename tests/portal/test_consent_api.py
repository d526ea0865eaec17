"""Consent in tiers (api/consents; ADR 0024): `GET /api/v1/me/consents`,
`POST /api/v1/me/consents/{tier}` and `GET /api/v1/patients/{id}/consents`.

Each tier's state and the full history (a withdrawal closes the open grant, a new grant is a
new row, nothing else changes); a give names the current document version; refusals answer
as problems with stable codes; every request writes exactly one audit event; another
patient's consents are out of reach (404, like an unknown id); withdrawing `collect` stops
check-ins at once (the bridge's bound is tested in test_consent_bridge.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from api.app import create_app
from tests.api.conftest import TestUser
from tests.api.support import assert_problem

pytestmark = pytest.mark.anyio

ME = "/api/v1/me/consents"


@pytest.fixture
async def client(anyio_backend: str, settings_for: Any, serve: Any) -> AsyncIterator[httpx.AsyncClient]:
    # As the stack runs it: the embedded broker has no idempotent producer (ADR 0003).
    async with serve(create_app(settings_for(kafka_idempotent_producer=False))) as http:
        yield http


def audit_count(db: psycopg.Connection, user: TestUser) -> int:
    row = db.execute("SELECT count(*) FROM audit_events WHERE actor_id = %s", (user.id,)).fetchone()
    assert row is not None
    return int(row[0])


def enrolment_consent(db: psycopg.Connection, patient_id: str) -> None:
    """The collection consent as enrolment records it today (no document version)."""
    db.execute(
        "INSERT INTO consents (patient_id, granted_at) VALUES (%s, %s)",
        (patient_id, datetime.now(UTC) - timedelta(days=30)),
    )


def tiers(body: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {t["tier"]: (t["state"], t["document_version"]) for t in body["tiers"]}


async def test_tiers_are_given_and_withdrawn_with_history_kept_and_each_call_audited_once(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    make_patient: Callable[[], str],
    make_user: Callable[..., TestUser],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    me = make_patient()
    enrolment_consent(db, me)
    patient = make_user("patient", patient_id=me)
    headers = auth_headers(patient)

    async def call(method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        before = audit_count(db, patient)
        response = await client.request(method, path, json=body, headers=headers)
        assert audit_count(db, patient) == before + 1, f"{method} {path}: not one audit event"
        return response

    first = await call("GET", ME)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["patient_id"] == me
    # Sharing with no choice recorded reads as given at enrolment (ADR 0024).
    assert tiers(body) == {
        "collect": ("given", None),
        "share_care_team": ("given", None),
        "research": ("not_given", None),
    }
    assert {t["tier"]: t["current_document_version"] for t in body["tiers"]} == {
        "collect": "collect-v1",
        "share_care_team": "share_care_team-v1",
        "research": "research-v1",
    }
    assert {t["tier"]: t["enforced"] for t in body["tiers"]} == {
        "collect": True,
        "share_care_team": True,
        "research": False,
    }
    assert [(e["tier"], e["action"]) for e in body["history"]] == [("collect", "given")]

    given = await call("POST", f"{ME}/research", {"action": "give", "document_version": "research-v1"})
    assert given.status_code == 200, given.text
    assert tiers(given.json())["research"] == ("given", "research-v1")

    withdrawn = await call("POST", f"{ME}/collect", {"action": "withdraw"})
    assert withdrawn.status_code == 200, withdrawn.text
    assert tiers(withdrawn.json())["collect"] == ("withdrawn", None)

    again = await call("POST", f"{ME}/collect", {"action": "give", "document_version": "collect-v1"})
    assert again.status_code == 200, again.text
    body = again.json()
    assert tiers(body)["collect"] == ("given", "collect-v1")
    # Newest first; the enrolment grant is still there, closed.
    assert [(e["tier"], e["action"], e["document_version"]) for e in body["history"]] == [
        ("collect", "given", "collect-v1"),
        ("collect", "withdrawn", None),
        ("research", "given", "research-v1"),
        ("collect", "given", None),
    ]
    rows = db.execute(
        "SELECT scope, document_version, withdrawn_at IS NOT NULL, recorded_by FROM consents "
        "WHERE patient_id = %s ORDER BY id",
        (me,),
    ).fetchall()
    assert rows == [
        ("remote_monitoring", None, True, None),
        ("research", "research-v1", False, patient.id),
        ("remote_monitoring", "collect-v1", False, patient.id),
    ]
    # The audit trail names what changed, never more.
    events = db.execute(
        "SELECT action, resource, outcome, patient_id, detail FROM audit_events WHERE actor_id = %s ORDER BY id",
        (patient.id,),
    ).fetchall()
    assert [(a, r, o, p) for a, r, o, p, _ in events] == [
        ("read", "consents", "allowed", me),
        ("update", "consents", "allowed", me),
        ("update", "consents", "allowed", me),
        ("update", "consents", "allowed", me),
    ]
    assert events[1][4] == {"tier": "research", "change": "give", "document_version": "research-v1"}
    assert events[2][4] == {"tier": "collect", "change": "withdraw"}


async def test_changes_are_validated_and_refusals_audited_once(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    make_patient: Callable[[], str],
    make_user: Callable[..., TestUser],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    me = make_patient()
    patient = make_user("patient", patient_id=me)
    headers = auth_headers(patient)
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("marketing", {"action": "give", "document_version": "marketing-v1"}, 422, "validation_error"),
        ("research", {"action": "agree"}, 422, "validation_error"),
        ("research", {"action": "give", "document_version": "research-v1", "extra": 1}, 422, "validation_error"),
        ("research", {"action": "give"}, 422, "unknown_document_version"),
        ("research", {"action": "give", "document_version": "research-v0"}, 422, "unknown_document_version"),
        ("research", {"action": "give", "document_version": "collect-v1"}, 422, "unknown_document_version"),
        ("collect", {"action": "withdraw"}, 409, "not_given"),
        ("research", {"action": "give", "document_version": "research-v1"}, 200, ""),
        ("research", {"action": "give", "document_version": "research-v1"}, 409, "already_given"),
        ("research", {"action": "withdraw"}, 200, ""),
        ("research", {"action": "withdraw"}, 409, "not_given"),
    ]
    for tier, body, status, code in cases:
        before = audit_count(db, patient)
        response = await client.post(f"{ME}/{tier}", json=body, headers=headers)
        assert audit_count(db, patient) == before + 1, (tier, body)
        if status == 200:
            assert response.status_code == 200, response.text
        else:
            assert_problem(response, status, code)
    rows = db.execute("SELECT scope, withdrawn_at IS NULL FROM consents WHERE patient_id = %s", (me,)).fetchall()
    assert rows == [("research", False)]


async def test_two_gives_at_once_open_one_grant(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    make_patient: Callable[[], str],
    make_user: Callable[..., TestUser],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    me = make_patient()
    patient = make_user("patient", patient_id=me)
    headers = auth_headers(patient)
    body = {"action": "give", "document_version": "share_care_team-v1"}
    answers = await asyncio.gather(
        *(client.post(f"{ME}/share_care_team", json=body, headers=headers) for _ in range(4))
    )
    assert sorted(a.status_code for a in answers) == [200, 409, 409, 409]
    row = db.execute("SELECT count(*) FROM consents WHERE patient_id = %s", (me,)).fetchone()
    assert row == (1,)


async def test_another_patients_consents_are_out_of_reach(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    make_patient: Callable[[], str],
    make_user: Callable[..., TestUser],
    make_care_team: Callable[..., object],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    mine, theirs = make_patient(), make_patient()
    enrolment_consent(db, mine)
    users = {
        "patient": make_user("patient", patient_id=mine),
        "other_patient": make_user("patient", patient_id=theirs),
        "clinician": make_user("clinician"),
        "outsider": make_user("clinician"),
        "admin": make_user("admin"),
        "ops": make_user("ops"),
    }
    make_care_team([users["clinician"]], [mine])
    make_care_team([users["outsider"]], [theirs])
    leaks: list[str] = []
    for role, user in users.items():
        headers = auth_headers(user)
        answers = {}
        for target in (mine, "no-such-patient-xyz"):
            before = audit_count(db, user)
            response = await client.get(f"/api/v1/patients/{target}/consents", headers=headers)
            assert audit_count(db, user) == before + 1, (role, target)
            answers[target] = (response.status_code, response.json().get("code"))
        in_scope = role in ("patient", "clinician", "admin")
        if in_scope and answers[mine][0] != 200:
            leaks.append(f"{role}: own patient answered {answers[mine]}")
        if not in_scope and answers[mine] != answers["no-such-patient-xyz"]:
            leaks.append(f"{role}: {answers[mine]} vs unknown {answers['no-such-patient-xyz']}")
        if not in_scope and answers[mine][0] != 404:
            leaks.append(f"{role}: {answers[mine]}")
        # The /me routes are a patient's own: staff get 403, and nobody names another patient there.
        before = audit_count(db, user)
        own = await client.get(ME, headers=headers)
        change = await client.post(
            f"{ME}/research", json={"action": "give", "document_version": "research-v1"}, headers=headers
        )
        assert audit_count(db, user) == before + 2, role
        if role in ("patient", "other_patient"):
            assert own.status_code == 200, own.text
            assert own.json()["patient_id"] == (mine if role == "patient" else theirs)
            assert change.status_code == 200, change.text
        else:
            assert_problem(own, 403, "not_a_patient")
            assert_problem(change, 403, "not_a_patient")
    assert leaks == []
    # Each patient's research grant is their own.
    rows = db.execute(
        "SELECT patient_id FROM consents WHERE scope = 'research' AND patient_id IN (%s, %s) ORDER BY patient_id",
        (mine, theirs),
    ).fetchall()
    assert sorted(r[0] for r in rows) == sorted([mine, theirs])


async def test_withdrawing_collect_refuses_check_ins_at_once(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    make_patient: Callable[[], str],
    make_user: Callable[..., TestUser],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    me = make_patient()
    enrolment_consent(db, me)
    patient = make_user("patient", patient_id=me)
    headers = auth_headers(patient)
    withdrawn = await client.post(f"{ME}/collect", json={"action": "withdraw"}, headers=headers)
    assert withdrawn.status_code == 200, withdrawn.text
    checkin = await client.post(f"/api/v1/patients/{me}/consciousness", json={"level": "A"}, headers=headers)
    assert_problem(checkin, 403, "no_consent")


async def test_a_clinician_outside_the_team_reads_consents_only_under_break_glass(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    make_patient: Callable[[], str],
    make_user: Callable[..., TestUser],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    patient_id = make_patient()
    enrolment_consent(db, patient_id)
    outsider = make_user("clinician")
    headers = auth_headers(outsider)
    assert_problem(
        await client.get(f"/api/v1/patients/{patient_id}/consents", headers=headers), 404, "patient_not_found"
    )
    grant = await client.post(
        f"/api/v1/patients/{patient_id}/break-glass", json={"reason": "patient unconscious in A&E"}, headers=headers
    )
    assert grant.status_code == 201, grant.text
    read = await client.get(f"/api/v1/patients/{patient_id}/consents", headers=headers)
    assert read.status_code == 200, read.text
    assert tiers(read.json())["collect"] == ("given", None)
    row = db.execute(
        "SELECT detail FROM audit_events WHERE actor_id = %s AND resource = 'consents' AND outcome = 'allowed'",
        (outsider.id,),
    ).fetchone()
    assert row is not None
    assert row[0]["break_glass"] is True
