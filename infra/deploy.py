"""`python -m infra.deploy`: a deployment's one-off set-up, run before the platform's processes
start and again after each upgrade (the compose file's `platform-setup` service;
docs/operations.md, "Multi-host deployment").

1. Database, as its owner: apply the pending migrations (yoyo, under its lock), then create or
   update one LOGIN role per process, `<group>_login`, member of its group role and nothing
   else, with the password this deployment gave it (ADR 0016).
2. The first platform admin, when `RPM_FIRST_ADMIN_USERNAME` is set and no user has that name
   (never changed afterwards: the admin changes their own password and adds the others).
3. MQTT broker, as the dynamic-security admin: the ingest bridges' client and role (they read
   every device's telemetry and status through the shared subscription and send commands).
   Devices are provisioned later, one by one, by an admin (`POST /api/v1/devices`).

The local stack does the same for its own state directory (infra/stack/); this module is for
services the stack does not run. Running it again changes nothing but the passwords given.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg import sql
from pydantic import Field, SecretStr, model_validator

from api.security import hash_password
from core.clients.broker_admin import BrokerAdmin, BrokerAdminError
from core.clients.db import apply_migrations
from core.settings import BrokerAdminSettings
from infra.stack import DB_ROLES  # process -> its group role (migration 0005)

T = TypeVar("T")
_PLACEHOLDER = SecretStr("change-me")


class DeploySettings(BrokerAdminSettings):
    owner_database_url: SecretStr = Field(
        SecretStr("postgresql://rpm_owner:change-me@127.0.0.1:5432/rpm"),
        description="libpq URL of the database owner (runs migrations, creates the process logins; "
        "python -m infra.deploy only, never given to a process)",
    )
    api_db_password: SecretStr = Field(_PLACEHOLDER, description="Password of rpm_api_login (the API)")
    ingest_db_password: SecretStr = Field(_PLACEHOLDER, description="Password of rpm_ingest_login (ingest bridges)")
    streams_db_password: SecretStr = Field(_PLACEHOLDER, description="Password of rpm_streams_login (stream workers)")
    alerts_db_password: SecretStr = Field(_PLACEHOLDER, description="Password of rpm_alerts_login (alert service)")
    reporting_db_password: SecretStr = Field(
        _PLACEHOLDER, description="Password of rpm_reporting_login (Grafana's read-only datasource)"
    )
    first_admin_username: str = Field(
        "", description="User name of the first platform admin, created once if no user has it (empty: none)"
    )
    first_admin_password: SecretStr | None = Field(
        None, description="Its first password (used only to create it; required with the user name)"
    )
    mqtt_username: str = Field("rpm-ingest", description="MQTT user of the bridge (a service identity)")
    mqtt_password: SecretStr = Field(_PLACEHOLDER, description="Its password")

    @model_validator(mode="after")
    def _admin_has_a_password(self) -> DeploySettings:
        if self.first_admin_username and self.first_admin_password is None:
            raise ValueError("RPM_FIRST_ADMIN_USERNAME needs RPM_FIRST_ADMIN_PASSWORD")
        return self

    def db_passwords(self) -> dict[str, str]:
        return {process: getattr(self, f"{process}_db_password").get_secret_value() for process in DB_ROLES}


def ensure_logins(conn: psycopg.Connection, passwords: dict[str, str]) -> None:
    """Create or update each process's login: LOGIN, no other power, member of its group."""
    for process, group in DB_ROLES.items():
        name = f"{group}_login"
        login = sql.Identifier(name)
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(login))
        conn.execute(
            sql.SQL(
                "ALTER ROLE {} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD {}"
            ).format(login, sql.Literal(passwords[process]))
        )
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), login))


def ensure_first_admin(conn: psycopg.Connection, username: str, password: str) -> bool:
    """Create the admin unless a user of that name exists; whether it was created."""
    row = conn.execute(
        """INSERT INTO users (username, password_hash, role, display_name) VALUES (%s, %s, 'admin', %s)
           ON CONFLICT (username) DO NOTHING RETURNING id""",
        (username, hash_password(password), username),
    ).fetchone()
    return row is not None


def set_up_database(settings: DeploySettings) -> list[str]:
    """Migrations, logins, the first admin; returns the ids of the migrations applied."""
    url = settings.owner_database_url.get_secret_value()
    applied = apply_migrations(url)
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_logins(conn, settings.db_passwords())
        admin, password = settings.first_admin_username, settings.first_admin_password
        if admin and password is not None and ensure_first_admin(conn, admin, password.get_secret_value()):
            print(f"deploy: admin {admin!r} created", file=sys.stderr)
    return applied


def set_up_broker(settings: DeploySettings) -> None:
    """The ingest bridges' MQTT client and role (dynamic security)."""
    admin = BrokerAdmin(
        settings.mqtt_host,
        settings.mqtt_port,
        settings.mqtt_admin_username,
        settings.mqtt_admin_password.get_secret_value(),
    )
    with admin:
        admin.ensure_ingest_client(settings.mqtt_username, settings.mqtt_password.get_secret_value())


def _when_up(what: str, step: Callable[[], T], errors: tuple[type[Exception], ...], wait_s: float = 120.0) -> T:
    """Run `step`, again every 2 s while the service is not up yet (started beside it), for at
    most `wait_s`; then its error propagates."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return step()
        except errors as exc:
            if time.monotonic() > deadline:
                raise
            print(f"deploy: {what} not ready ({exc}); trying again", file=sys.stderr)
            time.sleep(2.0)


def main() -> None:
    settings = DeploySettings()
    applied = _when_up("database", lambda: set_up_database(settings), (psycopg.OperationalError,))
    print(f"deploy: {len(applied)} migration(s) applied, process logins in place", file=sys.stderr)
    _when_up("MQTT broker", lambda: set_up_broker(settings), (BrokerAdminError,))
    print(f"deploy: MQTT client {settings.mqtt_username!r} and its role in place", file=sys.stderr)


if __name__ == "__main__":
    main()
