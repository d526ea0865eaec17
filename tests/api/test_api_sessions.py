"""Sessions end to end: refresh-token rotation and reuse detection, logout, password change,
disabling an account, the session limits, and the audit of every refresh."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import psycopg
import pytest

from api.settings import ApiSettings
from tests.api.conftest import open_session
from tests.api.support import PASSWORD, assert_problem

pytestmark = pytest.mark.anyio

TOKEN_URL = "/api/v1/auth/token"
REFRESH_URL = "/api/v1/auth/refresh"


async def log_in(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post(TOKEN_URL, data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post(REFRESH_URL, data={"grant_type": "refresh_token", "refresh_token": refresh_token})


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def sid(settings: ApiSettings, tokens: dict[str, Any]) -> str:
    claims = jwt.decode(
        tokens["access_token"], settings.jwt_secret.get_secret_value(), algorithms=["HS256"], audience="rpm-api"
    )
    return str(claims["sid"])


async def test_refresh_rotates_both_tokens_within_the_same_session_and_is_audited(
    client: httpx.AsyncClient, settings: ApiSettings, make_user: Any, audit_rows: Any
) -> None:
    user = make_user("clinician")
    first = await log_in(client, user.username)
    response = await refresh(client, first["refresh_token"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert sid(settings, second) == sid(settings, first)
    assert (await client.get("/api/v1/me", headers=bearer(second))).status_code == 200

    [row] = audit_rows(actor_id=user.id, action="refresh")
    assert row["outcome"] == "allowed"
    assert row["detail"] == {"client_ip": "192.0.2.10", "session_id": sid(settings, first)}


async def test_reusing_a_rotated_refresh_token_is_refused_and_ends_the_session(
    client: httpx.AsyncClient, settings: ApiSettings, make_user: Any, audit_rows: Any, db: psycopg.Connection
) -> None:
    user = make_user("clinician")
    first = await log_in(client, user.username)
    second = (await refresh(client, first["refresh_token"])).json()

    # The token refreshed away is presented again (a copy the thief or the victim kept).
    reused = await refresh(client, first["refresh_token"])
    assert_problem(reused, 401, "refresh_token_reused")
    # The whole session is over, for whoever holds its newer tokens too.
    assert_problem(await refresh(client, second["refresh_token"]), 401, "session_ended")
    assert_problem(await client.get("/api/v1/me", headers=bearer(second)), 401, "session_ended")

    reasons = [(r["outcome"], r["detail"].get("reason")) for r in audit_rows(actor_id=user.id, action="refresh")]
    assert reasons == [
        ("allowed", None),
        ("denied", "refresh_token_reuse"),
        ("denied", "session_refresh_token_reuse"),
    ]
    row = db.execute("SELECT revoked_reason FROM sessions WHERE id = %s", (sid(settings, first),)).fetchone()
    assert row == ("refresh_token_reuse",)


async def test_an_unknown_refresh_token_is_refused_without_ending_anything(
    client: httpx.AsyncClient, make_user: Any
) -> None:
    user = make_user("clinician")
    tokens = await log_in(client, user.username)
    assert_problem(await refresh(client, secrets.token_urlsafe(32)), 401, "invalid_token")
    assert (await refresh(client, tokens["refresh_token"])).status_code == 200


async def test_refresh_needs_the_refresh_grant(client: httpx.AsyncClient, make_user: Any) -> None:
    tokens = await log_in(client, make_user("clinician").username)
    response = await client.post(REFRESH_URL, data={"grant_type": "password", "refresh_token": tokens["refresh_token"]})
    assert_problem(response, 422, "validation_error")
    # An access token is not a refresh token.
    assert_problem(await refresh(client, tokens["access_token"]), 401, "invalid_token")


async def test_logout_ends_the_session_for_access_and_refresh_tokens(
    client: httpx.AsyncClient, settings: ApiSettings, make_user: Any, audit_rows: Any
) -> None:
    user = make_user("clinician")
    tokens = await log_in(client, user.username)
    other = await log_in(client, user.username)  # another device of the same user

    response = await client.post("/api/v1/auth/logout", headers=bearer(tokens))
    assert response.status_code == 204, response.text
    assert_problem(await client.get("/api/v1/me", headers=bearer(tokens)), 401, "session_ended")
    assert_problem(await refresh(client, tokens["refresh_token"]), 401, "session_ended")
    # Only that session: the other one goes on.
    assert (await client.get("/api/v1/me", headers=bearer(other))).status_code == 200
    [row] = audit_rows(actor_id=user.id, action="logout")
    assert row["detail"] == {"client_ip": "192.0.2.10", "session_id": sid(settings, tokens)}


async def test_password_change_ends_every_session_of_the_user(
    client: httpx.AsyncClient, make_user: Any, audit_rows: Any
) -> None:
    user = make_user("clinician")
    here, there = await log_in(client, user.username), await log_in(client, user.username)
    new_password = "a much longer new passphrase"

    wrong = await client.post(
        "/api/v1/me/password",
        json={"current_password": "not it", "new_password": new_password},
        headers=bearer(here),
    )
    assert_problem(wrong, 403, "wrong_password")
    response = await client.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": new_password},
        headers=bearer(here),
    )
    assert response.status_code == 204, response.text

    for tokens in (here, there):
        assert_problem(await client.get("/api/v1/me", headers=bearer(tokens)), 401, "session_ended")
        assert_problem(await refresh(client, tokens["refresh_token"]), 401, "session_ended")
    assert (await client.post(TOKEN_URL, data={"username": user.username, "password": PASSWORD})).status_code == 401
    await log_in(client, user.username, new_password)
    rows = audit_rows(actor_id=user.id, action="change_password")
    assert [(r["outcome"], r["detail"].get("reason"), r["detail"].get("sessions_ended")) for r in rows] == [
        ("denied", "wrong_password", None),
        ("allowed", None, 2),
    ]


async def test_disabling_an_account_ends_its_sessions_for_good(
    client: httpx.AsyncClient, make_user: Any, db: psycopg.Connection
) -> None:
    user = make_user("clinician")
    tokens = await log_in(client, user.username)
    db.execute("UPDATE users SET disabled = true WHERE id = %s", (user.id,))
    assert_problem(await refresh(client, tokens["refresh_token"]), 401, "session_ended")
    # Enabled again, the account does not get its old sessions back.
    db.execute("UPDATE users SET disabled = false WHERE id = %s", (user.id,))
    assert_problem(await client.get("/api/v1/me", headers=bearer(tokens)), 401, "session_ended")
    # The refused refresh above used that refresh token up: presenting it again is a reuse.
    assert_problem(await refresh(client, tokens["refresh_token"]), 401, "refresh_token_reused")


def _store_refresh_token(db: psycopg.Connection, session_id: str, expires_at: datetime) -> str:
    token = secrets.token_urlsafe(32)
    db.execute(
        "INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) VALUES (%s, %s, %s, %s)",
        (hashlib.sha256(token.encode()).digest(), session_id, expires_at - timedelta(minutes=30), expires_at),
    )
    return token


async def test_no_refresh_after_the_idle_or_the_absolute_limit(
    client: httpx.AsyncClient, make_user: Any, db: psycopg.Connection, audit_rows: Any
) -> None:
    user = make_user("clinician")
    now = datetime.now(UTC)

    idle_session = open_session(db, user.id, auth_time=now - timedelta(hours=1))
    idle = _store_refresh_token(db, idle_session, now - timedelta(seconds=1))
    body = assert_problem(await refresh(client, idle), 401, "session_expired")
    assert "idle" in body["detail"]

    old_session = open_session(db, user.id, auth_time=now - timedelta(hours=12, minutes=1), hours=12)
    ancient = _store_refresh_token(db, old_session, now + timedelta(minutes=10))
    body = assert_problem(await refresh(client, ancient), 401, "session_expired")
    assert "maximum" in body["detail"]

    reasons = [r["detail"]["reason"] for r in audit_rows(actor_id=user.id, action="refresh")]
    assert reasons == ["refresh_token_expired", "session_absolute_timeout"]


async def test_a_refresh_near_the_absolute_limit_is_cut_short(
    client: httpx.AsyncClient, make_user: Any, db: psycopg.Connection
) -> None:
    user = make_user("clinician")
    now = datetime.now(UTC)
    session_id = open_session(db, user.id, auth_time=now - timedelta(hours=11, minutes=55), hours=12)
    token = _store_refresh_token(db, session_id, now + timedelta(minutes=5))
    response = await refresh(client, token)
    assert response.status_code == 200, response.text
    assert response.json()["expires_in"] <= 5 * 60
    assert response.json()["refresh_expires_in"] <= 5 * 60
