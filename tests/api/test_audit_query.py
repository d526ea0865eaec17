"""The admins' audit query: filters (patient, actor, action, outcome, time), newest first,
keyset paging that neither repeats nor skips, refusal for other roles, and the query itself
audited."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.api.support import assert_problem

pytestmark = pytest.mark.anyio

URL = "/api/v1/audit-events"


async def test_filters_and_keyset_pages(
    client: httpx.AsyncClient,
    make_patient: Callable[[], str],
    make_user: Any,
    make_care_team: Any,
    auth_headers: Callable[..., dict[str, str]],
) -> None:
    patient, other = make_patient(), make_patient()
    clinician, admin = make_user("clinician"), make_user("admin")
    make_care_team([clinician], [patient])
    headers = auth_headers(clinician)
    before = datetime.now(UTC) - timedelta(seconds=1)
    for _ in range(5):  # five allowed reads of the care plan
        assert (await client.get(f"/api/v1/patients/{patient}/care-plan", headers=headers)).status_code == 200
    for _ in range(2):  # two denied ones elsewhere
        assert (await client.get(f"/api/v1/patients/{other}/care-plan", headers=headers)).status_code == 404
    admin_headers = auth_headers(admin)

    response = await client.get(URL, params={"actor_id": str(clinician.id)}, headers=admin_headers)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert len(items) == 7
    assert [(i["at"], i["id"]) for i in items] == sorted(((i["at"], i["id"]) for i in items), reverse=True)

    denied = (
        await client.get(URL, params={"actor_id": str(clinician.id), "outcome": "denied"}, headers=admin_headers)
    ).json()
    assert {(i["patient_id"], i["outcome"], i["detail"]["reason"]) for i in denied["items"]} == {
        (other, "denied", "not_visible")
    }
    assert len(denied["items"]) == 2
    by_patient = (
        await client.get(
            URL, params={"patient_id": patient, "action": "read", "resource": "care_plan"}, headers=admin_headers
        )
    ).json()
    assert len(by_patient["items"]) == 5
    later = (
        await client.get(
            URL,
            params={"actor_id": str(clinician.id), "start": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()},
            headers=admin_headers,
        )
    ).json()
    assert later["items"] == []
    window = (
        await client.get(
            URL,
            params={
                "actor_id": str(clinician.id),
                "start": before.isoformat(),
                "end": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
            },
            headers=admin_headers,
        )
    ).json()
    assert len(window["items"]) == 7

    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"actor_id": str(clinician.id), "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = await client.get(URL, params=params, headers=admin_headers)
        assert page.status_code == 200, page.text
        seen += [i["id"] for i in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [i["id"] for i in items]

    # The queries themselves are in the trail, as the admin's reads of audit_events.
    own = (
        await client.get(URL, params={"actor_id": str(admin.id), "resource": "audit_events"}, headers=admin_headers)
    ).json()
    assert len(own["items"]) >= 5
    assert all(i["action"] == "read" and i["outcome"] == "allowed" for i in own["items"])


async def test_only_admins_and_bad_filters_are_clear(
    client: httpx.AsyncClient,
    make_patient: Callable[[], str],
    make_user: Any,
    auth_headers: Callable[..., dict[str, str]],
    audit_rows: Callable[..., list[dict[str, Any]]],
) -> None:
    patient = make_patient()
    for role in ("clinician", "ops"):
        user = make_user(role)
        response = await client.get(URL, params={"patient_id": patient}, headers=auth_headers(user))
        assert_problem(response, 403, "role_not_allowed")
        assert [e["outcome"] for e in audit_rows(actor_id=user.id, resource="audit_events")] == ["denied"]
    me = make_user("patient", patient_id=patient)
    assert_problem(await client.get(URL, headers=auth_headers(me)), 403, "role_not_allowed")
    assert_problem(await client.get(URL), 401, "not_authenticated")
    admin = auth_headers(make_user("admin"))
    for params in (
        {"outcome": "maybe"},
        {"actor_id": "not-a-uuid"},
        {"cursor": "!!"},
        {"cursor": "bm90LWEtY3Vyc29y"},
        {"start": "yesterday"},
        {"start": "2025-01-02T00:00:00Z", "end": "2025-01-01T00:00:00Z"},
        {"limit": 0},
        {"limit": 501},
    ):
        assert_problem(await client.get(URL, params=params, headers=admin), 422, "validation_error")
