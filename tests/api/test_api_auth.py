"""Login, tokens, session limits, rate limiting and the audit of logins, end to end against
the real database (users created per test)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import psycopg
import pytest

from api.app import create_app
from api.security import issue_token
from api.settings import ApiSettings
from tests.api.support import PASSWORD, assert_problem

pytestmark = pytest.mark.anyio

TOKEN_URL = "/api/v1/auth/token"


async def post_login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post(TOKEN_URL, data={"username": username, "password": password})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def craft_token(
    settings: ApiSettings,
    user_id: uuid.UUID,
    role: str,
    *,
    now: datetime,
    auth_time: datetime,
    session_id: str = "0" * 32,
) -> str:
    token, _ = issue_token(
        key=settings.jwt_secret.get_secret_value(),
        issuer=settings.jwt_issuer,
        user_id=user_id,
        role=role,
        session_id=session_id,
        auth_time=auth_time,
        now=now,
        ttl=settings.access_token_ttl,
        absolute_limit=settings.session_absolute_timeout,
    )
    return token


async def test_login_returns_a_short_lived_bearer_token_and_audits_it(
    client: httpx.AsyncClient, settings: ApiSettings, make_user: Any, audit_rows: Any
) -> None:
    user = make_user("clinician")
    response = await post_login(client, user.username, PASSWORD)

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert 890 <= body["expires_in"] <= 900
    claims = jwt.decode(
        body["access_token"],
        settings.jwt_secret.get_secret_value(),
        algorithms=["HS256"],
        audience=settings.jwt_issuer,
    )
    assert claims["sub"] == str(user.id)
    assert claims["role"] == "clinician"
    assert claims["sid"]
    assert claims["exp"] - claims["iat"] == 900
    assert len(body["refresh_token"]) >= 40
    assert 1790 <= body["refresh_expires_in"] <= 1800
    [row] = audit_rows(actor_id=user.id, action="login")
    assert row["outcome"] == "allowed"
    assert row["actor_role"] == "clinician"
    assert row["detail"]["username"] == user.username
    assert row["detail"]["session_id"] == claims["sid"]


async def test_me_describes_the_logged_in_patient(
    client: httpx.AsyncClient, make_patient: Any, make_user: Any, login: Any
) -> None:
    patient_id = make_patient()
    user = make_user("patient", patient_id=patient_id)
    response = await client.get("/api/v1/me", headers=await login(user))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": str(user.id),
        "username": user.username,
        "display_name": "Test patient",
        "role": "patient",
        "patient_id": patient_id,
    }


async def test_wrong_password_is_refused_and_audited(
    client: httpx.AsyncClient,
    make_user: Any,
    audit_rows: Any,
) -> None:
    user = make_user("clinician")
    response = await post_login(client, user.username, "not the password")
    assert_problem(response, 401, "invalid_credentials")
    assert response.headers["www-authenticate"].startswith("Bearer")
    [row] = audit_rows(actor_id=user.id, action="login")
    assert row["outcome"] == "denied"
    assert row["detail"]["reason"] == "wrong_password"
    assert set(row["detail"]) == {"username", "client_ip", "reason"}  # never the password tried


async def test_unknown_user_gets_the_same_answer_as_a_wrong_password(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
) -> None:
    username = f"nobody-{uuid.uuid4().hex[:8]}"
    response = await post_login(client, username, PASSWORD)
    body = assert_problem(response, 401, "invalid_credentials")
    assert body["detail"] == "username or password is wrong"
    row = db.execute(
        "SELECT actor_id, outcome, detail FROM audit_events WHERE action = 'login' AND detail->>'username' = %s",
        (username,),
    ).fetchone()
    assert row == (None, "denied", {"username": username, "client_ip": "192.0.2.10", "reason": "unknown_user"})


async def test_disabled_user_gets_the_answer_of_a_wrong_password_even_with_the_right_one(
    client: httpx.AsyncClient,
    make_user: Any,
    audit_rows: Any,
) -> None:
    user = make_user("clinician", disabled=True)
    right = await post_login(client, user.username, PASSWORD)
    wrong = await post_login(client, user.username, "not the password")
    # Nothing in the answer tells whoever holds the password that it was right.
    assert_problem(right, 401, "invalid_credentials")
    assert right.json() == wrong.json()
    assert right.headers["www-authenticate"] == wrong.headers["www-authenticate"]
    # The audit trail does tell the administrator.
    rows = audit_rows(actor_id=user.id, action="login")
    assert [(r["outcome"], r["detail"]["reason"]) for r in rows] == [
        ("denied", "account_disabled"),
        ("denied", "wrong_password"),
    ]


async def test_disabling_a_user_ends_their_sessions_at_once(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    make_user: Any,
    login: Any,
) -> None:
    user = make_user("clinician")
    headers = await login(user)
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 200
    db.execute("UPDATE users SET disabled = true WHERE id = %s", (user.id,))
    assert_problem(await client.get("/api/v1/me", headers=headers), 401, "invalid_token")


async def test_five_failures_from_one_client_make_that_client_wait_with_retry_after(
    client: httpx.AsyncClient,
    make_user: Any,
    audit_rows: Any,
    login: Any,
) -> None:
    user, bystander = make_user("clinician"), make_user("clinician")
    for _ in range(5):
        assert (await post_login(client, user.username, "wrong")).status_code == 401

    # Even the right password is refused now, without being checked.
    response = await post_login(client, user.username, PASSWORD)
    body = assert_problem(response, 429, "too_many_login_attempts")
    assert 1 <= int(response.headers["retry-after"]) <= 300
    assert "username" in body["detail"]
    # Case variants share the budget.
    assert (await post_login(client, user.username.upper(), PASSWORD)).status_code == 429
    # Another user behind the same address is not locked out (the per-address budget is larger).
    await login(bystander)

    reasons = [row["detail"]["reason"] for row in audit_rows(action="login", actor_id=user.id)]
    assert reasons == ["wrong_password"] * 5
    limited = audit_rows(action="login", outcome="denied")
    assert any(
        r["detail"].get("reason") == "rate_limited_user_and_client" and r["detail"]["username"] == user.username
        for r in limited
    )


async def test_many_failures_from_one_address_lock_that_address(
    settings_for: Callable[..., ApiSettings],
    serve: Any,
    make_user: Any,
) -> None:
    app = create_app(settings_for(login_max_failures_per_ip=3))
    users = [make_user("clinician") for _ in range(4)]
    async with serve(app, ("198.51.100.7", 40000)) as client:
        for user in users[:3]:
            assert (await post_login(client, user.username, "wrong")).status_code == 401
        response = await post_login(client, users[3].username, PASSWORD)
    body = assert_problem(response, 429, "too_many_login_attempts")
    assert "client address" in body["detail"]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "not_authenticated"),
        ({"Authorization": "Bearer not-a-jwt"}, "invalid_token"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "not_authenticated"),
    ],
)
async def test_token_is_required(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    code: str,
) -> None:
    for path in ("/api/v1/me", "/api/v1/patients/anyone/observations?metric=heart_rate"):
        response = await client.get(path, headers=headers)
        assert_problem(response, 401, code)
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_expired_and_forged_tokens_are_refused(
    client: httpx.AsyncClient,
    settings: ApiSettings,
    make_user: Any,
) -> None:
    user = make_user("clinician")
    past = datetime.now(UTC) - timedelta(minutes=20)
    expired = craft_token(settings, user.id, "clinician", now=past, auth_time=past)
    assert_problem(await client.get("/api/v1/me", headers=bearer(expired)), 401, "token_expired")

    forged = jwt.encode(
        {
            "sub": str(user.id),
            "role": "admin",
            "iss": "rpm-api",
            "aud": "rpm-api",
            "sid": "x",
            "iat": int(datetime.now(UTC).timestamp()),
            "exp": int(datetime.now(UTC).timestamp()) + 600,
            "auth_time": int(datetime.now(UTC).timestamp()),
        },
        "another key that is long enough for HS256!!",
        algorithm="HS256",
    )
    assert_problem(await client.get("/api/v1/me", headers=bearer(forged)), 401, "invalid_token")

    # A valid signature with a role the user does not have (stale or tampered) is refused too.
    now = datetime.now(UTC)
    wrong_role = craft_token(settings, user.id, "admin", now=now, auth_time=now)
    assert_problem(await client.get("/api/v1/me", headers=bearer(wrong_role)), 401, "invalid_token")


async def test_login_form_errors_are_problems_that_do_not_echo_the_password(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(TOKEN_URL, data={"password": "hunter2-secret"})
    body = assert_problem(response, 422, "validation_error")
    assert ["body", "username"] in [error["loc"] for error in body["errors"]]
    assert "hunter2-secret" not in response.text
