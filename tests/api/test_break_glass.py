"""Break-glass: a clinician outside the patient's care teams opens time-boxed access with a
reason; every request under it is audited with `break_glass: true` and the grant id; once
the grant expires the patient answers 404 again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from tests.api.support import assert_problem

pytestmark = pytest.mark.anyio


def url(patient_id: str) -> str:
    return f"/api/v1/patients/{patient_id}/break-glass"


REASON = "Patient arrived in the emergency department unconscious"


@pytest.fixture
def ward(make_patient: Any, make_user: Any, make_care_team: Any) -> dict[str, Any]:
    mine, theirs = make_patient(), make_patient()
    clinician, colleague = make_user("clinician"), make_user("clinician")
    make_care_team([clinician], [mine])
    make_care_team([colleague], [theirs])
    return {
        "mine": mine,
        "theirs": theirs,
        "clinician": clinician,
        "patient": make_user("patient", patient_id=mine),
        "admin": make_user("admin"),
        "ops": make_user("ops"),
    }


async def test_a_grant_opens_access_audited_as_break_glass_until_it_expires(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    auth_headers: Callable[..., dict[str, str]],
    audit_rows: Callable[..., list[dict[str, Any]]],
    add_observations: Callable[..., None],
    db: psycopg.Connection,
) -> None:
    headers = auth_headers(ward["clinician"])
    theirs = ward["theirs"]
    add_observations(theirs, "heart_rate", [(datetime.now(UTC) - timedelta(minutes=10), 80.0)])
    observations = f"/api/v1/patients/{theirs}/observations"
    assert_problem(
        await client.get(observations, params={"metric": "heart_rate"}, headers=headers), 404, "patient_not_found"
    )

    opened = await client.post(url(theirs), json={"reason": REASON, "duration_minutes": 30}, headers=headers)
    assert opened.status_code == 201, opened.text
    grant = opened.json()
    expires = datetime.fromisoformat(grant["expires_at"])
    assert expires - datetime.fromisoformat(grant["granted_at"]) == timedelta(minutes=30)
    assert grant["reason"] == REASON

    listed = (await client.get("/api/v1/me/break-glass", headers=headers)).json()["items"]
    assert [g["id"] for g in listed] == [grant["id"]]

    read = await client.get(observations, params={"metric": "heart_rate"}, headers=headers)
    assert read.status_code == 200, read.text
    assert len(read.json()["items"]) == 1
    plan = await client.get(f"/api/v1/patients/{theirs}/care-plan", headers=headers)
    assert plan.status_code == 200, plan.text
    # Break-glass reads; it does not make the clinician one of the care team.
    change = await client.put(f"/api/v1/patients/{theirs}/care-plan", json={"plan": {}, "version": 0}, headers=headers)
    assert_problem(change, 403, "care_team_only")

    under = [e for e in audit_rows(patient_id=theirs, actor_id=ward["clinician"].id) if e["detail"].get("break_glass")]
    assert [(e["resource"], e["action"], e["outcome"]) for e in under] == [
        ("break_glass", "create", "allowed"),
        ("observations", "read", "allowed"),
        ("care_plan", "read", "allowed"),
        ("care_plan", "update", "denied"),
    ]
    assert {e["detail"]["break_glass_grant"] for e in under} == {grant["id"]}

    # Admins find them in the audit trail.
    admin = auth_headers(ward["admin"])
    found = await client.get(
        "/api/v1/audit-events", params={"patient_id": theirs, "break_glass": "true"}, headers=admin
    )
    assert found.status_code == 200, found.text
    assert sorted(e["id"] for e in found.json()["items"]) == sorted(e["id"] for e in under)
    others = await client.get(
        "/api/v1/audit-events", params={"patient_id": theirs, "break_glass": "false"}, headers=admin
    )
    assert not {e["id"] for e in others.json()["items"]} & {e["id"] for e in under}
    assert others.json()["items"]  # the denied read before the grant

    # Expiry: move the grant into the past (the database's clock decides).
    db.execute(
        "UPDATE break_glass_grants SET granted_at = now() - interval '2 hours',"
        " expires_at = now() - interval '1 second' WHERE id = %s",
        (grant["id"],),
    )
    assert_problem(
        await client.get(observations, params={"metric": "heart_rate"}, headers=headers), 404, "patient_not_found"
    )
    assert (await client.get("/api/v1/me/break-glass", headers=headers)).json()["items"] == []
    last = audit_rows(patient_id=theirs, actor_id=ward["clinician"].id)[-1]
    assert last["outcome"] == "denied"
    assert "break_glass" not in last["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "too short"}, "reason"),
        ({"reason": "          x         "}, "reason"),
        ({"reason": REASON, "duration_minutes": 241}, "duration_minutes"),
        ({"reason": REASON, "duration_minutes": 0}, "duration_minutes"),
        ({"reason": "x" * 1001}, "reason"),
        ({}, "reason"),
    ],
)
async def test_a_bad_request_is_refused_with_the_field(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    auth_headers: Callable[..., dict[str, str]],
    body: dict[str, Any],
    field: str,
) -> None:
    response = await client.post(url(ward["theirs"]), json=body, headers=auth_headers(ward["clinician"]))
    problem = assert_problem(response, 422, "validation_error")
    assert field in problem["detail"]


async def test_who_may_open_one(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    auth_headers: Callable[..., dict[str, str]],
    audit_rows: Callable[..., list[dict[str, Any]]],
) -> None:
    body = {"reason": REASON}
    for who in ("patient", "admin", "ops"):
        response = await client.post(url(ward["theirs"]), json=body, headers=auth_headers(ward[who]))
        assert_problem(response, 403, "role_not_allowed")
    clinician = auth_headers(ward["clinician"])
    assert_problem(await client.post(url(ward["mine"]), json=body, headers=clinician), 409, "break_glass_not_needed")
    assert_problem(await client.post(url("no-such-patient"), json=body, headers=clinician), 404, "patient_not_found")
    assert_problem(await client.post(url(ward["theirs"]), json=body), 401, "not_authenticated")
    denied = audit_rows(patient_id=ward["theirs"], resource="break_glass")
    assert [e["outcome"] for e in denied] == ["denied"] * 3
