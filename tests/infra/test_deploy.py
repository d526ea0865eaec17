"""`python -m infra.deploy`, a deployment's one-off set-up (migrations, one database login per
process, the ingest bridges' MQTT client), against the test stack's real database and broker."""

from __future__ import annotations

import psycopg
import pytest
from pydantic import SecretStr, ValidationError

from api.security import verify_password
from core.clients.broker_admin import INGEST_ROLE
from infra.deploy import DeploySettings, set_up_broker, set_up_database
from infra.stack import DB_ROLES, Stack
from tests.helpers import unique


def _settings(stack: Stack) -> DeploySettings:
    # The stack's own passwords: the session's other tests keep logging in with them.
    s = stack.secrets
    return DeploySettings(
        owner_database_url=SecretStr(stack.admin_db_url),
        api_db_password=SecretStr(s.pg_role_passwords["api"]),
        ingest_db_password=SecretStr(s.pg_role_passwords["ingest"]),
        streams_db_password=SecretStr(s.pg_role_passwords["streams"]),
        alerts_db_password=SecretStr(s.pg_role_passwords["alerts"]),
        reporting_db_password=SecretStr(s.pg_role_passwords["reporting"]),
        mqtt_port=stack.ports.mqtt,
        mqtt_admin_password=SecretStr(s.mqtt_admin_password),
        mqtt_password=SecretStr(s.mqtt_ingest_password),
    )


def test_set_up_is_idempotent_and_every_process_logs_in_as_itself(stack: Stack, db: psycopg.Connection) -> None:
    settings = _settings(stack)
    # The stack applied every migration already: nothing more to apply.
    assert set_up_database(settings) == []
    for process, group in DB_ROLES.items():
        with psycopg.connect(stack.db_url(process)) as conn:
            row = conn.execute("SELECT session_user, pg_has_role(session_user, %s, 'MEMBER')", (group,)).fetchone()
        assert row == (f"{group}_login", True)
    members = db.execute("SELECT count(*) FROM pg_auth_members WHERE member = 'rpm_alerts_login'::regrole").fetchone()
    assert members == (1,)  # its group and nothing else, however often the set-up runs


def test_the_bridges_mqtt_client_is_created_with_the_ingest_role(stack: Stack) -> None:
    username = unique("rpm-ingest-deploy")
    settings = _settings(stack).model_copy(update={"mqtt_username": username})
    set_up_broker(settings)
    set_up_broker(settings)  # again: nothing changes
    with stack.broker_admin() as admin:
        try:
            response = admin.execute({"command": "getClient", "username": username})
        finally:
            admin.execute({"command": "deleteClient", "username": username})
    assert [r["rolename"] for r in response["data"]["client"]["roles"]] == [INGEST_ROLE]


def test_production_refuses_placeholder_passwords() -> None:
    with pytest.raises(ValidationError, match="placeholder secrets"):
        DeploySettings(environment="production")


def test_the_first_admin_is_created_once_and_never_changed(stack: Stack, db: psycopg.Connection) -> None:
    username = unique("admin")
    first = _settings(stack).model_copy(
        update={"first_admin_username": username, "first_admin_password": SecretStr("first-Passw0rd-long")}
    )
    set_up_database(first)
    again = first.model_copy(update={"first_admin_password": SecretStr("other-Passw0rd-long")})
    set_up_database(again)
    rows = db.execute("SELECT role, password_hash FROM users WHERE username = %s", (username,)).fetchall()
    db.execute("DELETE FROM users WHERE username = %s", (username,))
    assert len(rows) == 1
    role, password_hash = rows[0]
    assert role == "admin"
    assert verify_password("first-Passw0rd-long", password_hash)
    assert not verify_password("other-Passw0rd-long", password_hash)
