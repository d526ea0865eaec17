"""Devices through the API: provisioning through `core.clients.provisioning` (the secret answered once,
credentials that the real broker accepts), revocation (the broker refuses them), binding
with a validity start, the list per role with binding and last seen, the errors, the audit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from starlette.concurrency import run_in_threadpool

from api.app import create_app
from infra.stack import Stack
from tests.api.support import assert_problem, closed_port
from tests.helpers import Device

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(anyio_backend: str, settings_for: Any, serve: Any, stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(mqtt_admin_password=stack.secrets.mqtt_admin_password, kafka_idempotent_producer=False)
    async with serve(create_app(settings)) as http:
        yield http


@pytest.fixture
def ward(make_patient: Any, make_user: Any, make_care_team: Any) -> dict[str, Any]:
    mine, theirs = make_patient(), make_patient()
    clinician, other = make_user("clinician"), make_user("clinician")
    make_care_team([clinician], [mine])
    make_care_team([other], [theirs])
    return {
        "mine": mine,
        "theirs": theirs,
        "clinician": clinician,
        "other": other,
        "patient": make_user("patient", patient_id=mine),
        "admin": make_user("admin"),
        "ops": make_user("ops"),
    }


def device_id() -> str:
    return f"dev-{datetime.now(UTC).strftime('%H%M%S%f')}"


def connects(stack: Stack, username: str, password: str) -> bool:
    device = Device(stack, username, password)
    try:
        return not device.connect().is_failure
    finally:
        device.close()


async def test_provision_answers_the_secret_once_and_the_broker_takes_it_until_revoked(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    auth_headers: Callable[..., dict[str, str]],
    audit_rows: Callable[..., list[dict[str, Any]]],
    add_observations: Callable[..., None],
    stack: Stack,
) -> None:
    admin = auth_headers(ward["admin"])
    dev = device_id()
    response = await client.post(
        "/api/v1/devices",
        json={"device_id": dev, "patient_id": ward["mine"], "device_class": "pulse_oximeter", "model": "Ox 2"},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    creds = response.json()
    assert creds["username"] == dev
    assert len(creds["password"]) >= 24
    assert response.headers["cache-control"] == "no-store"
    assert await run_in_threadpool(connects, stack, dev, creds["password"])

    listed = (await client.get("/api/v1/devices", params={"limit": 500}, headers=admin)).json()
    mine = next(d for d in listed["items"] if d["device_id"] == dev)
    assert "password" not in mine
    assert mine["binding"]["patient_id"] == ward["mine"]
    assert mine["revoked_at"] is None
    assert mine["last_seen"] is None
    # Last seen: the newest stored reading of this device for the bound patient, any metric.
    now = datetime.now(UTC).replace(microsecond=0)
    add_observations(ward["mine"], "spo2", [(now - timedelta(minutes=9), 97.0)], device_id=dev)
    add_observations(ward["mine"], "heart_rate", [(now - timedelta(minutes=3), 70.0)], device_id=dev)
    add_observations(ward["mine"], "heart_rate", [(now - timedelta(minutes=1), 71.0)], device_id="another-device")
    seen = (await client.get("/api/v1/devices", params={"limit": 500}, headers=admin)).json()["items"]
    mine = next(d for d in seen if d["device_id"] == dev)
    assert datetime.fromisoformat(mine["last_seen"]) == now - timedelta(minutes=3)

    revoked = await client.post(f"/api/v1/devices/{dev}/revoke", headers=admin)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    assert revoked.json()["binding"]["valid_to"] is not None
    assert not await run_in_threadpool(connects, stack, dev, creds["password"])

    events = audit_rows(patient_id=ward["mine"], resource="device")
    assert [(e["action"], e["outcome"]) for e in events] == [("provision", "allowed"), ("revoke", "allowed")]
    assert all(creds["password"] not in str(e["detail"]) for e in events)


async def test_bind_from_a_start_and_the_list_per_role_with_last_seen(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    auth_headers: Callable[..., dict[str, str]],
    add_observations: Callable[..., None],
) -> None:
    admin = auth_headers(ward["admin"])
    dev = device_id()
    now = datetime.now(UTC)
    first = await client.post(
        "/api/v1/devices",
        json={
            "device_id": dev,
            "patient_id": ward["mine"],
            "device_class": "wearable",
            "valid_from": (now - timedelta(days=1)).isoformat(),
            "valid_to": (now + timedelta(hours=1)).isoformat(),
        },
        headers=admin,
    )
    assert first.status_code == 201, first.text
    seen = now - timedelta(minutes=5)
    add_observations(ward["mine"], "heart_rate", [(seen, 70.0)], device_id=dev)

    overlap = await client.post(
        f"/api/v1/devices/{dev}/bind",
        json={"patient_id": ward["theirs"], "valid_from": now.isoformat()},
        headers=admin,
    )
    assert_problem(overlap, 409, "binding_overlap")
    later = (now + timedelta(hours=2)).replace(microsecond=0)
    bound = await client.post(
        f"/api/v1/devices/{dev}/bind",
        json={"patient_id": ward["theirs"], "valid_from": later.isoformat()},
        headers=admin,
    )
    assert bound.status_code == 200, bound.text
    binding = bound.json()["binding"]
    assert binding["patient_id"] == ward["theirs"]
    assert datetime.fromisoformat(binding["valid_from"]) == later
    assert binding["valid_to"] is None
    again = await client.post(f"/api/v1/devices/{dev}/bind", json={"patient_id": ward["mine"]}, headers=admin)
    assert_problem(again, 409, "device_bound")

    async def ids(user: Any) -> set[str]:
        page = await client.get("/api/v1/devices", params={"limit": 500}, headers=auth_headers(user))
        assert page.status_code == 200, page.text
        return {d["device_id"] for d in page.json()["items"]}

    # Both bindings are current or ahead: both care teams see the device; the patient too.
    assert dev in await ids(ward["clinician"])
    assert dev in await ids(ward["other"])
    assert dev in await ids(ward["patient"])
    stranger = auth_headers(ward["ops"])
    assert_problem(await client.get("/api/v1/devices", headers=stranger), 403, "role_not_allowed")
    listed = (await client.get("/api/v1/devices", params={"limit": 500}, headers=admin)).json()["items"]
    device = next(d for d in listed if d["device_id"] == dev)
    assert device["binding"]["patient_id"] == ward["theirs"]  # the open binding


async def test_a_clinician_sees_only_devices_of_their_patients_and_paging_is_keyset(
    client: httpx.AsyncClient, ward: dict[str, Any], auth_headers: Callable[..., dict[str, str]]
) -> None:
    admin = auth_headers(ward["admin"])
    made = []
    for patient in ("mine", "mine", "mine", "theirs"):
        dev = device_id()
        response = await client.post(
            "/api/v1/devices",
            json={"device_id": dev, "patient_id": ward[patient], "device_class": "scale"},
            headers=admin,
        )
        assert response.status_code == 201, response.text
        made.append(dev)
    clinician = auth_headers(ward["clinician"])
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/devices", params=params, headers=clinician)).json()
        seen += [d["device_id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(made[:3])
    assert made[3] not in seen


async def test_refusals(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    auth_headers: Callable[..., dict[str, str]],
    audit_rows: Callable[..., list[dict[str, Any]]],
) -> None:
    body = {"device_id": device_id(), "patient_id": ward["mine"], "device_class": "scale"}
    for who in ("clinician", "patient", "ops"):
        headers = auth_headers(ward[who])
        assert_problem(await client.post("/api/v1/devices", json=body, headers=headers), 403, "role_not_allowed")
        assert_problem(await client.post("/api/v1/devices/x1/revoke", headers=headers), 403, "role_not_allowed")
        assert_problem(
            await client.post("/api/v1/devices/x1/bind", json={"patient_id": ward["mine"]}, headers=headers),
            403,
            "role_not_allowed",
        )
    admin = auth_headers(ward["admin"])
    unknown = {**body, "patient_id": "no-such-patient"}
    assert_problem(await client.post("/api/v1/devices", json=unknown, headers=admin), 404, "patient_not_found")
    bad_class = {**body, "device_class": "toaster"}
    assert_problem(await client.post("/api/v1/devices", json=bad_class, headers=admin), 422, "unknown_device_class")
    bad_id = {**body, "device_id": "no spaces/allowed"}
    assert_problem(await client.post("/api/v1/devices", json=bad_id, headers=admin), 422, "validation_error")
    assert_problem(await client.post("/api/v1/devices/nobody-has-this/revoke", headers=admin), 404, "device_not_found")
    assert_problem(
        await client.post("/api/v1/devices/nobody-has-this/bind", json={"patient_id": ward["mine"]}, headers=admin),
        404,
        "device_not_found",
    )
    denied = audit_rows(patient_id=ward["mine"], resource="device", outcome="denied")
    # Provision and bind name the patient: three roles twice, then the admin's unknown class
    # and unknown-device bind (an unknown patient is another id; revoke names no patient).
    assert len(denied) == 3 * 2 + 2


async def test_a_broker_away_answers_503_and_leaves_no_device(
    anyio_backend: str,
    settings_for: Any,
    serve: Any,
    ward: dict[str, Any],
    auth_headers: Callable[..., dict[str, str]],
    db: psycopg.Connection,
) -> None:
    settings = settings_for(mqtt_port=closed_port(), broker_admin_timeout=1.0)
    dev = device_id()
    async with serve(create_app(settings)) as client:
        response = await client.post(
            "/api/v1/devices",
            json={"device_id": dev, "patient_id": ward["mine"], "device_class": "scale"},
            headers=auth_headers(ward["admin"]),
        )
    assert_problem(response, 503, "broker_unavailable")
    assert db.execute("SELECT count(*) FROM devices WHERE id = %s", (dev,)).fetchone() == (0,)
