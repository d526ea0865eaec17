"""Inputs no endpoint can handle are refused before any endpoint runs: a NUL character in
a path parameter, query parameter, form field or JSON string, and instants near the ends
of the calendar. The answer is a 422 problem naming where (never echoing the value), and
the attempt is audited when the caller is signed in."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from tests.api.support import PASSWORD, assert_problem

pytestmark = pytest.mark.anyio

RANGE = {"start": "2025-03-01T00:00:00Z", "end": "2025-03-02T00:00:00Z"}


def url(patient_id: str) -> str:
    return f"/api/v1/patients/{patient_id}/observations"


def errors_of(body: dict[str, Any]) -> list[tuple[list[str], str]]:
    return [(error["loc"], error["type"]) for error in body["errors"]]


async def test_nul_in_a_path_parameter_is_a_422_audited_with_the_caller(
    client: httpx.AsyncClient, make_user: Any, auth_headers: Any, audit_rows: Any
) -> None:
    clinician = make_user("clinician")
    response = await client.get(
        url("pt%00x"), params={"metric": "heart_rate", **RANGE}, headers=auth_headers(clinician)
    )
    body = assert_problem(response, 422, "validation_error")
    assert errors_of(body) == [(["path", "patient_id"], "nul_character")]
    assert "\\u0000" not in response.text

    [row] = audit_rows(actor_id=clinician.id)
    assert (row["action"], row["outcome"], row["patient_id"]) == ("read", "denied", None)
    assert row["resource"] == "/patients/{patient_id}/observations"  # the route, as its router names it
    assert row["detail"]["reason"] == "invalid_request"
    assert row["detail"]["errors"] == [{"loc": ["path", "patient_id"], "type": "nul_character"}]
    assert row["detail"]["client_ip"] == "192.0.2.10"
    assert len(row["detail"]["session_id"]) == 32


async def test_nul_in_a_query_parameter_is_a_422(
    client: httpx.AsyncClient, make_user: Any, make_patient: Any, auth_headers: Any
) -> None:
    patient_id = make_patient()
    headers = auth_headers(make_user("patient", patient_id=patient_id))
    response = await client.get(url(patient_id), params={"metric": "heart\x00rate", **RANGE}, headers=headers)
    body = assert_problem(response, 422, "validation_error")
    assert errors_of(body) == [(["query", "metric"], "nul_character")]


@pytest.mark.parametrize("field", ["username", "password"])
async def test_nul_in_a_login_form_field_is_a_422_that_does_not_echo_it(
    client: httpx.AsyncClient, make_user: Any, field: str, db: psycopg.Connection
) -> None:
    user = make_user("clinician")
    form = {"username": user.username, "password": PASSWORD}
    form[field] = form[field] + "\x00zq-secret-zq"
    response = await client.post("/api/v1/auth/token", data=form)
    body = assert_problem(response, 422, "validation_error")
    assert errors_of(body) == [(["body", field], "nul_character")]
    assert "zq-secret-zq" not in response.text
    # Anonymous: nobody to audit, and the login was not attempted.
    assert db.execute("SELECT count(*) FROM audit_events WHERE actor_id = %s", (user.id,)).fetchone() == (0,)


async def test_nul_in_a_json_string_is_a_422(client: httpx.AsyncClient, make_user: Any, auth_headers: Any) -> None:
    user = make_user("clinician")
    response = await client.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "long enough but \x00 inside"},
        headers=auth_headers(user),
    )
    body = assert_problem(response, 422, "validation_error")
    assert errors_of(body) == [(["body", "new_password"], "nul_character")]


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"start": "0001-01-01T00:00:00+01:00", "end": "2025-03-01T00:00:00Z"}, "start"),  # not in UTC
        ({"end": "0001-01-01T00:00:00Z"}, "end"),  # end - 24 h would be before year 1
        ({"start": "0001-01-01T00:00:00Z", "end": "0001-01-02T00:00:00Z"}, "start"),
        ({"end": "9999-12-31T23:59:59-01:00"}, "end"),  # not in UTC either
        ({"start": "9999-12-31T00:00:00Z", "end": "9999-12-31T23:59:59Z"}, "start"),
        ({"start": "0000-01-01T00:00:00Z"}, "start"),  # no year 0
    ],
)
async def test_instants_near_the_ends_of_the_calendar_are_422_and_the_read_is_audited(
    client: httpx.AsyncClient,
    make_user: Any,
    make_patient: Any,
    auth_headers: Any,
    audit_rows: Any,
    params: dict[str, str],
    where: str,
) -> None:
    patient_id = make_patient()
    user = make_user("patient", patient_id=patient_id)
    response = await client.get(url(patient_id), params={"metric": "heart_rate", **params}, headers=auth_headers(user))
    body = assert_problem(response, 422, "validation_error")
    assert (["query", where], "rfc3339") in errors_of(body)
    [row] = audit_rows(actor_id=user.id, action="read")
    assert (row["outcome"], row["patient_id"], row["detail"]["reason"]) == ("denied", patient_id, "invalid_request")


async def test_an_invalid_query_of_an_unknown_token_is_refused_as_unauthenticated_first(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(url("pt%00x"), params={"metric": "heart_rate"}, headers={"Authorization": "Bearer x"})
    # The NUL screen runs before authentication and answers 422; nothing is audited for
    # an unknown caller, and nothing leaks about the patient.
    assert_problem(response, 422, "validation_error")


async def test_a_nul_in_a_parameter_name_is_not_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", params={"a\x00b": "1"})
    body = assert_problem(response, 422, "validation_error")
    assert errors_of(body) == [(["query", "a\\0b"], "nul_character")]
    assert "\\u0000" not in response.text
