"""Fixtures of the API tests: settings pointing at the session stack, an in-process app,
and factories for patients, users, care teams and observations (unique ids per test).

Set-up goes through the superuser `db` connection; the app itself connects as `rpm_app`,
the role it has in production.
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.security import hash_password, issue_token
from api.settings import ApiSettings
from infra.stack import Stack
from tests.api.support import PASSWORD

JWT_SECRET = secrets.token_urlsafe(32)


@dataclass(frozen=True)
class TestUser:
    __test__ = False  # a record, not a test class

    id: uuid.UUID
    username: str
    role: str
    patient_id: str | None


def make_settings(stack: Stack, **overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": stack.app_db_url,
        "kafka_bootstrap": stack.kafka_bootstrap,
        "mqtt_host": "127.0.0.1",
        "mqtt_port": stack.ports.mqtt,
        "mqtt_admin_password": stack.secrets.mqtt_admin_password,  # placeholders are refused outside development
        "jwt_secret": JWT_SECRET,
        "readiness_timeout": 2.0,
        "db_acquire_timeout": 2.0,
    }
    values.update(overrides)
    # _env_file=None: a developer's .env must not change what the tests run against.
    return ApiSettings(_env_file=None, **values)


@pytest.fixture
def settings_for(stack: Stack) -> Callable[..., ApiSettings]:
    """Settings pointing at the session stack, with overrides (e.g. a closed Kafka port)."""
    return lambda **overrides: make_settings(stack, **overrides)


@pytest.fixture
def settings(settings_for: Callable[..., ApiSettings]) -> ApiSettings:
    return settings_for()


CLIENT_ADDRESS = ("192.0.2.10", 50000)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextlib.asynccontextmanager
async def running(app: FastAPI, address: tuple[str, int] = CLIENT_ADDRESS) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process with its lifespan run (pool opened), and an HTTP client for it."""
    transport = httpx.ASGITransport(app=app, client=address)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        yield http


@pytest.fixture
def serve() -> Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]:
    """`async with serve(app) as client:` for tests that build their own app."""
    return running


@pytest.fixture
async def client(anyio_backend: str, settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(settings)) as http:
        yield http


@pytest.fixture(scope="session")
def password_hash() -> str:
    # argon2 is slow on purpose; one hash serves every test user.
    return hash_password(PASSWORD)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_patient(db: psycopg.Connection) -> Callable[[], str]:
    def make() -> str:
        patient_id = unique("pt")
        db.execute("INSERT INTO patients (id, display_name) VALUES (%s, %s)", (patient_id, "Test Patient"))
        return patient_id

    return make


@pytest.fixture
def make_user(db: psycopg.Connection, password_hash: str) -> Callable[..., TestUser]:
    def make(role: str, *, patient_id: str | None = None, disabled: bool = False) -> TestUser:
        username = unique(role)
        row = db.execute(
            """
            INSERT INTO users (username, password_hash, role, display_name, patient_id, disabled)
            VALUES (%s, %s, %s, %s, %s, %s) RETURNING id
            """,
            (username, password_hash, role, f"Test {role}", patient_id, disabled),
        ).fetchone()
        assert row is not None
        return TestUser(row[0], username, role, patient_id)

    return make


@pytest.fixture
def make_care_team(db: psycopg.Connection) -> Callable[..., uuid.UUID]:
    def make(members: list[TestUser], patients: list[str]) -> uuid.UUID:
        row = db.execute("INSERT INTO care_teams (name) VALUES (%s) RETURNING id", (unique("team"),)).fetchone()
        assert row is not None
        team_id: uuid.UUID = row[0]
        for member in members:
            db.execute("INSERT INTO care_team_members (care_team_id, user_id) VALUES (%s, %s)", (team_id, member.id))
        for patient_id in patients:
            db.execute(
                "INSERT INTO care_team_patients (care_team_id, patient_id) VALUES (%s, %s)", (team_id, patient_id)
            )
        return team_id

    return make


@pytest.fixture
def add_observations(db: psycopg.Connection) -> Callable[..., None]:
    def add(patient_id: str, metric: str, points: list[tuple[datetime, float]], device_id: str = "dev-1") -> None:
        with db.cursor() as cur:
            cur.executemany(
                """
                INSERT INTO observations (patient_id, device_id, metric, ts, value, received_at, seq)
                VALUES (%s, %s, %s, %s, %s, now(), %s)
                """,
                [(patient_id, device_id, metric, ts, value, seq) for seq, (ts, value) in enumerate(points)],
            )

    return add


@pytest.fixture
def login(client: httpx.AsyncClient) -> Callable[[TestUser], Awaitable[dict[str, str]]]:
    """Log a user in with their password; returns the Authorization header to send."""

    async def do(user: TestUser) -> dict[str, str]:
        response = await client.post("/api/v1/auth/token", data={"username": user.username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    return do


def open_session(db: psycopg.Connection, user_id: uuid.UUID, *, auth_time: datetime, hours: float = 12) -> str:
    """A `sessions` row as a login would open it; returns its id (the token's `sid`)."""
    session_id = uuid.uuid4().hex
    db.execute(
        """
        INSERT INTO sessions (id, user_id, created_at, expires_at, last_refreshed_at)
        VALUES (%s, %s, %s, %s, %s)
        """,
        (session_id, user_id, auth_time, auth_time + timedelta(hours=hours), auth_time),
    )
    return session_id


@pytest.fixture
def auth_headers(settings: ApiSettings, db: psycopg.Connection) -> Callable[[TestUser], dict[str, str]]:
    """The Authorization header of a fresh session for a user, signed like a login would.

    Skips argon2 (about 0.1 s per login) in tests about something else than logging in;
    the password flow itself is tested in test_api_auth.
    """

    def make(user: TestUser) -> dict[str, str]:
        now = datetime.now(UTC)
        token, _ = issue_token(
            key=settings.jwt_secret.get_secret_value(),
            issuer=settings.jwt_issuer,
            user_id=user.id,
            role=user.role,
            session_id=open_session(db, user.id, auth_time=now),
            auth_time=now,
            now=now,
            ttl=settings.access_token_ttl,
            absolute_limit=settings.session_absolute_timeout,
        )
        return {"Authorization": f"Bearer {token}"}

    return make


@pytest.fixture
def audit_rows(db: psycopg.Connection) -> Callable[..., list[dict[str, Any]]]:
    """Audit events matching the given column values, oldest first."""

    def rows(**where: Any) -> list[dict[str, Any]]:
        clauses = " AND ".join(f"{column} = %s" for column in where)
        with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute(
                f"SELECT * FROM audit_events WHERE {clauses} ORDER BY id",  # noqa: S608 - column names from the test
                tuple(where.values()),
            )
            return cur.fetchall()

    return rows


@pytest.fixture
def team(
    make_patient: Callable[[], str],
    make_user: Callable[..., TestUser],
    make_care_team: Callable[..., uuid.UUID],
) -> dict[str, Any]:
    """A clinician and a colleague with two patients; another team's clinician and patient (the
    alerts API tests; test_patients_api.py has a team of its own)."""
    patients = [make_patient(), make_patient()]
    clinician, colleague = make_user("clinician"), make_user("clinician")
    make_care_team([clinician, colleague], patients)
    other_patient = make_patient()
    outsider = make_user("clinician")
    make_care_team([outsider], [other_patient])
    return {
        "patients": patients,
        "clinician": clinician,
        "colleague": colleague,
        "outsider": outsider,
        "other_patient": other_patient,
    }
