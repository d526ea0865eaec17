"""Observation reads: who may see which patient (404, never 403), filtering by metric and
time range, query validation, and the audit trail of every attempt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from tests.api.support import assert_problem

pytestmark = pytest.mark.anyio

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
RANGE = {"start": "2025-03-01T00:00:00Z", "end": "2025-03-02T00:00:00Z"}


def url(patient_id: str) -> str:
    return f"/api/v1/patients/{patient_id}/observations"


@pytest.fixture
def ward(make_patient: Any, make_user: Any, make_care_team: Any, add_observations: Any) -> dict[str, Any]:
    """Two care teams with one clinician and one patient each; readings for both patients."""
    mine, theirs = make_patient(), make_patient()
    clinician, other_clinician = make_user("clinician"), make_user("clinician")
    make_care_team([clinician], [mine])
    make_care_team([other_clinician], [theirs])
    for patient_id in (mine, theirs):
        add_observations(patient_id, "heart_rate", [(T0 + timedelta(minutes=10 * i), 70.0 + i) for i in range(6)])
        add_observations(patient_id, "spo2", [(T0 + timedelta(minutes=5), 97.0)], device_id="oxi-1")
    return {"mine": mine, "theirs": theirs, "clinician": clinician, "other_clinician": other_clinician}


async def test_clinician_reads_a_patient_of_their_care_team_filtered_by_metric_and_range(
    client: httpx.AsyncClient, ward: dict[str, Any], auth_headers: Any, audit_rows: Any
) -> None:
    headers = auth_headers(ward["clinician"])
    params = {"metric": "heart_rate", "start": "2025-03-01T08:10:00Z", "end": "2025-03-01T08:40:00Z"}
    response = await client.get(url(ward["mine"]), params=params, headers=headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["patient_id"] == ward["mine"]
    assert body["metric"] == "heart_rate"
    assert body["unit"] == "/min"
    assert body["start"] == "2025-03-01T08:10:00Z"
    assert body["end"] == "2025-03-01T08:40:00Z"
    assert body["truncated"] is False
    # Start inclusive, end exclusive, oldest first, no spo2 rows.
    assert body["items"] == [
        {"ts": "2025-03-01T08:10:00Z", "value": 71.0, "device_id": "dev-1"},
        {"ts": "2025-03-01T08:20:00Z", "value": 72.0, "device_id": "dev-1"},
        {"ts": "2025-03-01T08:30:00Z", "value": 73.0, "device_id": "dev-1"},
    ]

    [row] = audit_rows(actor_id=ward["clinician"].id, action="read")
    assert row["outcome"] == "allowed"
    assert row["actor_role"] == "clinician"
    assert row["patient_id"] == ward["mine"]
    assert row["resource"] == "observations"
    assert row["detail"]["metric"] == "heart_rate"
    assert row["detail"]["returned"] == 3
    assert "value" not in row["detail"]
    # Who read, from where, in which session (the token's sid).
    assert row["detail"]["client_ip"] == "192.0.2.10"
    token = headers["Authorization"].removeprefix("Bearer ")
    assert row["detail"]["session_id"] == jwt.decode(token, options={"verify_signature": False})["sid"]


async def test_other_metric_comes_with_its_own_unit_and_device(
    client: httpx.AsyncClient, ward: dict[str, Any], auth_headers: Any
) -> None:
    response = await client.get(
        url(ward["mine"]), params={"metric": "spo2", **RANGE}, headers=auth_headers(ward["clinician"])
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["unit"] == "%"
    assert body["items"] == [{"ts": "2025-03-01T08:05:00Z", "value": 97.0, "device_id": "oxi-1"}]


async def test_another_teams_patient_and_a_missing_patient_answer_the_same_404(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    auth_headers: Any,
    audit_rows: Any,
) -> None:
    headers = auth_headers(ward["clinician"])
    other = await client.get(url(ward["theirs"]), params={"metric": "heart_rate", **RANGE}, headers=headers)
    missing = await client.get(url("no-such-patient"), params={"metric": "heart_rate", **RANGE}, headers=headers)

    other_body = assert_problem(other, 404, "patient_not_found")
    missing_body = assert_problem(missing, 404, "patient_not_found")
    # Nothing distinguishes "exists but not yours" from "does not exist" but the id echoed.
    assert other_body["title"] == missing_body["title"]
    assert other_body["detail"].replace(ward["theirs"], "X") == missing_body["detail"].replace("no-such-patient", "X")
    assert other_body["instance"] == url(ward["theirs"])

    denied = audit_rows(actor_id=ward["clinician"].id, action="read")
    assert [(r["patient_id"], r["outcome"]) for r in denied] == [
        (ward["theirs"], "denied"),
        ("no-such-patient", "denied"),
    ]
    assert denied[0]["detail"]["reason"] == "not_visible"


async def test_patient_sees_only_themselves(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    make_user: Any,
    auth_headers: Any,
    audit_rows: Any,
) -> None:
    patient = make_user("patient", patient_id=ward["mine"])
    headers = auth_headers(patient)
    own = await client.get(url(ward["mine"]), params={"metric": "heart_rate", **RANGE}, headers=headers)
    assert own.status_code == 200, own.text
    assert len(own.json()["items"]) == 6

    other = await client.get(url(ward["theirs"]), params={"metric": "heart_rate", **RANGE}, headers=headers)
    assert_problem(other, 404, "patient_not_found")
    outcomes = [
        (r["patient_id"], r["outcome"], r["actor_role"]) for r in audit_rows(actor_id=patient.id, action="read")
    ]
    assert outcomes == [(ward["mine"], "allowed", "patient"), (ward["theirs"], "denied", "patient")]


async def test_admin_reads_any_existing_patient_and_ops_reads_none(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    make_user: Any,
    auth_headers: Any,
) -> None:
    admin, ops = make_user("admin"), make_user("ops")
    params = {"metric": "heart_rate", **RANGE}
    admin_headers = auth_headers(admin)
    assert (await client.get(url(ward["theirs"]), params=params, headers=admin_headers)).status_code == 200
    assert_problem(
        await client.get(url("no-such-patient"), params=params, headers=admin_headers), 404, "patient_not_found"
    )
    assert_problem(
        await client.get(url(ward["mine"]), params=params, headers=auth_headers(ops)), 404, "patient_not_found"
    )


async def test_clinician_in_several_teams_sees_all_their_patients(
    client: httpx.AsyncClient, ward: dict[str, Any], make_care_team: Any, auth_headers: Any
) -> None:
    make_care_team([ward["clinician"]], [ward["theirs"]])
    headers = auth_headers(ward["clinician"])
    response = await client.get(url(ward["theirs"]), params={"metric": "heart_rate", **RANGE}, headers=headers)
    assert response.status_code == 200, response.text


async def test_default_range_is_the_last_24_hours(
    client: httpx.AsyncClient, make_patient: Any, make_user: Any, add_observations: Any, auth_headers: Any
) -> None:
    patient_id = make_patient()
    now = datetime.now(UTC).replace(microsecond=0)
    add_observations(patient_id, "body_temp", [(now - timedelta(hours=30), 36.5), (now - timedelta(hours=1), 37.2)])
    headers = auth_headers(make_user("patient", patient_id=patient_id))
    response = await client.get(url(patient_id), params={"metric": "body_temp"}, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["value"] for item in body["items"]] == [37.2]
    span = datetime.fromisoformat(body["end"]) - datetime.fromisoformat(body["start"])
    assert span == timedelta(hours=24)


async def test_the_cursor_pages_through_without_repeating_or_skipping(
    client: httpx.AsyncClient, ward: dict[str, Any], auth_headers: Any, audit_rows: Any
) -> None:
    headers = auth_headers(ward["clinician"])
    params: dict[str, Any] = {"metric": "heart_rate", "limit": 4, **RANGE}
    seen, pages = [], 0
    while True:
        response = await client.get(url(ward["mine"]), params=params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [item["ts"] for item in body["items"]]
        pages += 1
        if body["next_cursor"] is None:
            assert body["truncated"] is False
            break
        assert body["truncated"] is True
        params["cursor"] = body["next_cursor"]
    assert pages == 2
    assert seen == [f"2025-03-01T08:{10 * i:02d}:00Z" for i in range(6)]  # each once, in order
    second = audit_rows(actor_id=ward["clinician"].id, action="read")[-1]
    assert second["detail"]["after"] == "2025-03-01T08:30:00+00:00"
    assert second["detail"]["returned"] == 2


async def test_the_cursor_keeps_microseconds(
    client: httpx.AsyncClient, make_patient: Any, make_user: Any, add_observations: Any, auth_headers: Any
) -> None:
    patient_id = make_patient()
    base = T0 + timedelta(microseconds=1)
    add_observations(patient_id, "spo2", [(base, 97.0), (base + timedelta(microseconds=1), 96.0)])
    headers = auth_headers(make_user("patient", patient_id=patient_id))
    first = (await client.get(url(patient_id), params={"metric": "spo2", "limit": 1, **RANGE}, headers=headers)).json()
    second = (
        await client.get(
            url(patient_id),
            params={"metric": "spo2", "limit": 1, "cursor": first["next_cursor"], **RANGE},
            headers=headers,
        )
    ).json()
    assert [i["value"] for i in first["items"]] == [97.0]
    assert [i["value"] for i in second["items"]] == [96.0]
    assert second["next_cursor"] is None


@pytest.mark.parametrize("cursor", ["not a cursor", "bm9wZQ", "eyJ2IjoxLCJtIjoic3BvMiIsInQiOjB9", "A" * 201])
async def test_a_cursor_that_is_not_ours_or_for_another_metric_is_a_422(
    client: httpx.AsyncClient, ward: dict[str, Any], auth_headers: Any, cursor: str
) -> None:
    # The third is a well-formed cursor for spo2, sent with heart_rate.
    response = await client.get(
        url(ward["mine"]),
        params={"metric": "heart_rate", "cursor": cursor, **RANGE},
        headers=auth_headers(ward["clinician"]),
    )
    body = assert_problem(response, 422, "validation_error")
    assert any(error["loc"][:2] == ["query", "cursor"] or error["type"] == "cursor" for error in body["errors"])


async def test_limit_truncates_and_says_so(client: httpx.AsyncClient, ward: dict[str, Any], auth_headers: Any) -> None:
    response = await client.get(
        url(ward["mine"]), params={"metric": "heart_rate", "limit": 2, **RANGE}, headers=auth_headers(ward["clinician"])
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["value"] for item in body["items"]] == [70.0, 71.0]
    assert body["truncated"] is True


async def test_offsets_are_honoured_and_answered_in_utc(
    client: httpx.AsyncClient, ward: dict[str, Any], auth_headers: Any
) -> None:
    # 09:15+01:00 is 08:15Z. The second form is what arrives when a client forgets to
    # percent-encode "+" in the query string.
    headers = auth_headers(ward["clinician"])
    for start in ("2025-03-01T09:15:00+01:00", "2025-03-01T09:15:00 01:00"):
        response = await client.get(
            f"{url(ward['mine'])}?metric=heart_rate&start={start}&end=2025-03-01T08:25:00Z", headers=headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["start"] == "2025-03-01T08:15:00Z"
        assert [item["ts"] for item in response.json()["items"]] == ["2025-03-01T08:20:00Z"]


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"metric": "blood_alcohol"}, ["query", "metric"]),
        ({}, ["query", "metric"]),
        ({"metric": "heart_rate", "start": "2025-03-01T08:00:00"}, ["query", "start"]),  # no offset
        ({"metric": "heart_rate", "start": "1740816000"}, ["query", "start"]),  # epoch seconds
        ({"metric": "heart_rate", "start": "2025-03-01"}, ["query", "start"]),  # a date only
        ({"metric": "heart_rate", "start": "2025-03-02T00:00:00Z", "end": "2025-03-01T00:00:00Z"}, ["query"]),
        ({"metric": "heart_rate", "start": "2025-01-01T00:00:00Z", "end": "2025-03-01T00:00:00Z"}, ["query"]),
        ({"metric": "heart_rate", "limit": "10001"}, ["query", "limit"]),
        ({"metric": "heart_rate", "limit": "0"}, ["query", "limit"]),
        ({"metric": "heart_rate", "metirc": "spo2"}, ["query", "metirc"]),  # a typo is not ignored
    ],
)
async def test_invalid_queries_are_422_problems_naming_the_parameter(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    auth_headers: Any,
    params: dict[str, str],
    where: list[str],
) -> None:
    response = await client.get(url(ward["mine"]), params=params, headers=auth_headers(ward["clinician"]))
    body = assert_problem(response, 422, "validation_error")
    assert body["title"] == "Request validation failed"
    assert where in [error["loc"][: len(where)] for error in body["errors"]]
    assert all(set(error) == {"loc", "message", "type"} for error in body["errors"])


async def test_unknown_metric_lists_the_catalogue(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    auth_headers: Any,
) -> None:
    response = await client.get(
        url(ward["mine"]), params={"metric": "mood", **RANGE}, headers=auth_headers(ward["clinician"])
    )
    body = assert_problem(response, 422, "validation_error")
    [error] = body["errors"]
    assert error["type"] == "unknown_metric"
    assert error["message"].startswith("unknown metric 'mood'; expected one of heart_rate, ")
    assert "glucose" in error["message"]
