"""Role x route and cross-care-team matrices over the care-plan, what-if, summary,
observation, rollup, break-glass, device and audit routes: a patient outside the caller's scope answers exactly like an
unknown id (404, same code), never 200, 403 or 409; device lists never show another team's
devices; every authenticated request writes exactly one audit event."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import psycopg
import pytest

from api.app import create_app
from infra.stack import Stack

pytestmark = pytest.mark.anyio

ROLES = ("admin", "clinician", "outsider", "patient", "other_patient", "ops")


@pytest.fixture
async def client(anyio_backend: str, settings_for: Any, serve: Any, stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(mqtt_admin_password=stack.secrets.mqtt_admin_password, kafka_idempotent_producer=False)
    async with serve(create_app(settings)) as http:
        yield http


def patient_routes(patient_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    base = f"/api/v1/patients/{patient_id}"
    return [
        ("GET", f"{base}/care-plan", None),
        ("PUT", f"{base}/care-plan", {"plan": {}, "version": 99}),
        ("POST", f"{base}/care-plan/what-if", {"plan": {}, "days": 1}),
        ("GET", f"{base}/summary", None),
        ("GET", f"{base}/observations?metric=heart_rate", None),
        ("GET", f"{base}/observations/rollups?metric=heart_rate&bucket=1h", None),
    ]


def audit_count(db: psycopg.Connection, user_id: Any) -> int:
    row = db.execute("SELECT count(*) FROM audit_events WHERE actor_id = %s", (user_id,)).fetchone()
    assert row is not None
    return int(row[0])


async def test_out_of_scope_ids_answer_like_unknown_ones_and_every_request_is_audited_once(
    client: httpx.AsyncClient,
    make_patient: Callable[[], str],
    make_user: Any,
    make_care_team: Any,
    auth_headers: Callable[..., dict[str, str]],
    db: psycopg.Connection,
) -> None:
    mine, theirs = make_patient(), make_patient()
    users = {
        "admin": make_user("admin"),
        "clinician": make_user("clinician"),
        "outsider": make_user("clinician"),
        "patient": make_user("patient", patient_id=mine),
        "other_patient": make_user("patient", patient_id=theirs),
        "ops": make_user("ops"),
    }
    make_care_team([users["clinician"]], [mine])
    make_care_team([users["outsider"]], [theirs])
    leaks: list[str] = []
    requests = 0
    for role in ROLES:
        user = users[role]
        headers = auth_headers(user)
        for index, (method, _, body) in enumerate(patient_routes(mine)):
            answers = {}
            for target in (mine, "no-such-patient-xyz"):
                _, path, _ = patient_routes(target)[index]
                before = audit_count(db, user.id)
                response = await client.request(method, path, json=body, headers=headers)
                requests += 1
                assert response.status_code < 500, response.text
                assert response.headers["cache-control"] == "no-store"
                assert audit_count(db, user.id) == before + 1, f"{role} {method} {path}: not one audit event"
                answers[target] = (response.status_code, response.json().get("code"))
            in_scope = role in ("admin", "clinician", "patient")
            if not in_scope and answers[mine] != answers["no-such-patient-xyz"]:
                leaks.append(f"{role} {method} {index}: {answers[mine]} vs unknown {answers['no-such-patient-xyz']}")
            if not in_scope and answers[mine][0] != 404:
                leaks.append(f"{role} {method} {index}: {answers[mine]}")
            if in_scope and answers[mine][0] == 404:
                leaks.append(f"{role} {method} {index}: own patient answered 404")
        # Break-glass: only a clinician outside the team obtains one; others learn nothing new.
        for target in (mine, "no-such-patient-xyz"):
            before = audit_count(db, user.id)
            response = await client.post(
                f"/api/v1/patients/{target}/break-glass",
                json={"reason": "matrix test of the access rules"},
                headers=headers,
            )
            requests += 1
            assert audit_count(db, user.id) == before + 1
            expected = {
                "outsider": 201 if target == mine else 404,
                "clinician": 409 if target == mine else 404,
            }.get(role, 403)
            if response.status_code != expected:
                leaks.append(f"{role} break-glass {target}: {response.status_code}")
    assert leaks == []
    assert requests == len(ROLES) * (len(patient_routes(mine)) * 2 + 2)


async def test_device_lists_never_cross_care_teams(
    client: httpx.AsyncClient,
    make_patient: Callable[[], str],
    make_user: Any,
    make_care_team: Any,
    auth_headers: Callable[..., dict[str, str]],
    db: psycopg.Connection,
) -> None:
    mine, theirs = make_patient(), make_patient()
    admin = make_user("admin")
    clinician, outsider = make_user("clinician"), make_user("clinician")
    make_care_team([clinician], [mine])
    make_care_team([outsider], [theirs])
    patient, other_patient = make_user("patient", patient_id=mine), make_user("patient", patient_id=theirs)
    owned: dict[str, str] = {}
    for who, patient_id in (("mine", mine), ("theirs", theirs)):
        device_id = f"mx-{patient_id}"
        response = await client.post(
            "/api/v1/devices",
            json={"device_id": device_id, "patient_id": patient_id, "device_class": "scale"},
            headers=auth_headers(admin),
        )
        assert response.status_code == 201, response.text
        owned[who] = device_id

    async def listed(user: Any) -> set[str]:
        before = audit_count(db, user.id)
        response = await client.get("/api/v1/devices", params={"limit": 500}, headers=auth_headers(user))
        assert response.status_code == 200, response.text
        assert audit_count(db, user.id) == before + 1
        return {d["device_id"] for d in response.json()["items"]} & set(owned.values())

    assert await listed(admin) == set(owned.values())
    assert await listed(clinician) == {owned["mine"]}
    assert await listed(outsider) == {owned["theirs"]}
    assert await listed(patient) == {owned["mine"]}
    assert await listed(other_patient) == {owned["theirs"]}
    # Device management and the audit trail are for admins only, whatever the id.
    for user in (clinician, outsider, patient):
        headers = auth_headers(user)
        for method, path, body in (
            ("POST", f"/api/v1/devices/{owned['mine']}/revoke", None),
            ("POST", "/api/v1/devices/no-such-device/revoke", None),
            ("POST", f"/api/v1/devices/{owned['theirs']}/bind", {"patient_id": mine}),
            ("GET", "/api/v1/audit-events", None),
        ):
            before = audit_count(db, user.id)
            response = await client.request(method, path, json=body, headers=headers)
            assert response.status_code == 403, (method, path, response.text)
            assert audit_count(db, user.id) == before + 1
