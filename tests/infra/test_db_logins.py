"""Least privilege in the database, as each process's own login (ARCHITECTURE.md §7, ADR 0016):
what an attacker holding that login would try is refused, and what the process's code does is
allowed. The catalog-wide map of every grant and why each is needed is in test_db_grants.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import errors

from infra.stack import DB_ROLES, Stack
from ingest.registry import load_snapshot
from streams.detection.repository import DeviceClasses
from tests.helpers import create_patient, unique


@pytest.fixture
def login(stack: Stack) -> Iterator[dict[str, psycopg.Connection]]:
    """An autocommit connection per process, with its own login and password."""
    conns = {process: psycopg.connect(stack.db_url(process), autocommit=True) for process in DB_ROLES}
    try:
        yield conns
    finally:
        for conn in conns.values():
            conn.close()


def _refused(conn: psycopg.Connection, statement: str, *args: object) -> bool:
    try:
        conn.execute(statement, args)
    except errors.InsufficientPrivilege:
        return True
    return False


@pytest.fixture
def clinician(db: psycopg.Connection) -> uuid.UUID:
    row = db.execute(
        "INSERT INTO users (username, password_hash, role, display_name) VALUES (%s, 'x', 'clinician', 'C') "
        "RETURNING id",
        (unique("grants-user"),),
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def test_the_api_cannot_make_anyone_an_admin(
    login: dict[str, psycopg.Connection], db: psycopg.Connection, clinician: uuid.UUID
) -> None:
    api = login["api"]
    assert _refused(api, "UPDATE users SET role = 'admin' WHERE id = %s", clinician)
    assert _refused(api, "UPDATE users SET disabled = false WHERE id = %s", clinician)
    assert _refused(
        api, "INSERT INTO users (username, password_hash, role, display_name) VALUES ('evil', 'x', 'admin', 'E')"
    )
    assert _refused(api, "DELETE FROM users WHERE id = %s", clinician)
    patient = create_patient(db)
    assert _refused(api, "DELETE FROM consents WHERE patient_id = %s", patient)
    assert _refused(api, "SELECT display_name, birth_date FROM patients WHERE id = %s", patient)
    role = db.execute("SELECT role FROM users WHERE id = %s", (clinician,)).fetchone()
    assert role == ("clinician",)
    # What its code does is allowed: the rehash of an outdated password hash.
    api.execute("UPDATE users SET password_hash = 'rehashed' WHERE id = %s", (clinician,))
    assert db.execute("SELECT password_hash FROM users WHERE id = %s", (clinician,)).fetchone() == ("rehashed",)


def test_the_api_cannot_stretch_or_erase_sessions(
    login: dict[str, psycopg.Connection], db: psycopg.Connection, clinician: uuid.UUID
) -> None:
    session = uuid.uuid4().hex
    now = datetime.now(UTC)
    db.execute(
        "INSERT INTO sessions (id, user_id, created_at, expires_at, last_refreshed_at) VALUES (%s, %s, %s, %s, %s)",
        (session, clinician, now, now + timedelta(hours=1), now),
    )
    api = login["api"]
    assert _refused(api, "UPDATE sessions SET expires_at = expires_at + interval '1 year' WHERE id = %s", session)
    assert _refused(api, "UPDATE sessions SET user_id = user_id WHERE id = %s", session)
    assert _refused(api, "DELETE FROM sessions WHERE id = %s", session)
    assert _refused(api, "DELETE FROM refresh_tokens WHERE session_id = %s", session)
    # What its code does is allowed: ending the session.
    api.execute(
        "UPDATE sessions SET revoked_at = %s, revoked_reason = 'logout' WHERE id = %s AND revoked_at IS NULL",
        (now, session),
    )
    row = db.execute("SELECT revoked_reason, expires_at FROM sessions WHERE id = %s", (session,)).fetchone()
    assert row == ("logout", now + timedelta(hours=1))


def test_the_api_keeps_consent_history(login: dict[str, psycopg.Connection], db: psycopg.Connection) -> None:
    """0012: the API withdraws an open grant and records new ones; it cannot reopen, move or
    re-scope a grant (the trigger), nor delete one (no grant)."""
    api = login["api"]
    patient = create_patient(db)
    now = datetime.now(UTC)
    assert _refused(api, "UPDATE consents SET granted_at = %s WHERE patient_id = %s", now, patient)
    assert _refused(api, "UPDATE consents SET scope = 'research' WHERE patient_id = %s", patient)
    # What its code does is allowed: close the open grant, then record a new one.
    api.execute("UPDATE consents SET withdrawn_at = %s WHERE patient_id = %s AND withdrawn_at IS NULL", (now, patient))
    api.execute(
        "INSERT INTO consents (patient_id, scope, granted_at, document_version) VALUES (%s, 'research', %s, %s)",
        (patient, now, "research-v1"),
    )
    for reopen in ("NULL", "withdrawn_at + interval '1 day'"):
        statement = f"UPDATE consents SET withdrawn_at = {reopen} WHERE patient_id = %s AND scope = 'remote_monitoring'"  # noqa: S608
        with pytest.raises(errors.RaiseException, match="history"):
            api.execute(statement, (patient,))
    with pytest.raises(errors.CheckViolation):
        api.execute("INSERT INTO consents (patient_id, scope, granted_at) VALUES (%s, 'marketing', %s)", (patient, now))
    rows = db.execute("SELECT scope, withdrawn_at IS NULL FROM consents WHERE patient_id = %s ORDER BY id", (patient,))
    assert rows.fetchall() == [("remote_monitoring", False), ("research", True)]


def test_audit_rows_are_insert_only_and_stamped_by_the_database(
    login: dict[str, psycopg.Connection], db: psycopg.Connection, clinician: uuid.UUID
) -> None:
    action = unique("grants-read")
    login["api"].execute(
        "INSERT INTO audit_events (actor_id, actor_role, action, resource, outcome) "
        "VALUES (%s, 'clinician', %s, 'patients/x', 'allowed')",
        (clinician, action),
    )
    row = db.execute("SELECT at, db_role FROM audit_events WHERE action = %s", (action,)).fetchone()
    assert row is not None
    assert row[1] == "rpm_api_login"
    assert abs(row[0] - datetime.now(UTC)) < timedelta(minutes=5)
    api = login["api"]
    assert _refused(
        api, "INSERT INTO audit_events (at, action, resource, outcome) VALUES ('2001-01-01', 'read', 'x', 'allowed')"
    )
    assert _refused(
        api,
        "INSERT INTO audit_events (db_role, action, resource, outcome) VALUES ('rpm_super', 'read', 'x', 'allowed')",
    )
    for process, conn in login.items():
        assert _refused(conn, "UPDATE audit_events SET outcome = 'denied' WHERE action = %s", action), process
        assert _refused(conn, "DELETE FROM audit_events WHERE action = %s", action), process
        assert _refused(conn, "TRUNCATE audit_events"), process
        if process != "api":
            assert _refused(
                conn, "INSERT INTO audit_events (action, resource, outcome) VALUES ('forged', 'x', 'allowed')"
            ), process
    # Even a role granted UPDATE or DELETE by mistake meets the append-only triggers (rolled
    # back whatever happens: other tests' audit rows live in the same table).
    with pytest.raises(errors.RaiseException, match="append-only"), db.transaction(force_rollback=True):
        db.execute("DELETE FROM audit_events WHERE action = %s", (action,))
    with pytest.raises(errors.RaiseException, match="append-only"), db.transaction(force_rollback=True):
        db.execute("TRUNCATE audit_events")
    assert db.execute("SELECT count(*) FROM audit_events WHERE action = %s", (action,)).fetchone() == (1,)


def test_ingest_reads_its_registry_and_writes_nothing(
    login: dict[str, psycopg.Connection], stack: Stack, db: psycopg.Connection, clinician: uuid.UUID
) -> None:
    ingest = login["ingest"]
    now = datetime.now(UTC)
    patient = create_patient(db)
    assert _refused(
        ingest,
        "INSERT INTO observations (patient_id, device_id, metric, ts, value, received_at, seq) "
        "VALUES (%s, 'd', 'heart_rate', %s, 60, %s, 1)",
        patient,
        now,
        now,
    )
    assert _refused(ingest, "UPDATE users SET role = 'admin' WHERE id = %s", clinician)
    assert _refused(ingest, "INSERT INTO consents (patient_id, granted_at) VALUES (%s, %s)", patient, now)
    assert _refused(ingest, "UPDATE consents SET withdrawn_at = NULL WHERE patient_id = %s", patient)
    assert _refused(ingest, "SELECT display_name FROM patients WHERE id = %s", patient)
    assert _refused(ingest, "SELECT password_hash FROM users")

    async def snapshot() -> bool:
        async with await psycopg.AsyncConnection.connect(stack.db_url("ingest"), autocommit=True) as conn:
            snap = await load_snapshot(conn)
        return snap.has_consent(patient, now)

    assert asyncio.run(snapshot())


def test_streams_stores_readings_and_reads_device_classes_only(
    login: dict[str, psycopg.Connection], stack: Stack, db: psycopg.Connection, clinician: uuid.UUID
) -> None:
    streams = login["streams"]
    patient = create_patient(db)
    assert _refused(streams, "UPDATE observations SET value = 0 WHERE patient_id = %s", patient)
    assert _refused(streams, "DELETE FROM observations WHERE patient_id = %s", patient)
    assert _refused(streams, "SELECT password_hash FROM users")
    assert _refused(streams, "SELECT display_name FROM patients")
    assert _refused(streams, "UPDATE users SET role = 'admin' WHERE id = %s", clinician)
    device = unique("grants-cuff")
    db.execute("INSERT INTO devices (id, device_class) VALUES (%s, 'bp_cuff')", (device,))

    async def classes() -> dict[str, str]:
        lookup = DeviceClasses(stack.db_url("streams"))
        try:
            return await lookup.classes_of([device])
        finally:
            await lookup.close()

    assert asyncio.run(classes()) == {device: "bp_cuff"}


def test_reporting_reads_dashboards_never_secrets(login: dict[str, psycopg.Connection], db: psycopg.Connection) -> None:
    reporting = login["reporting"]
    patient = create_patient(db)
    assert _refused(reporting, "SELECT password_hash FROM users")
    assert _refused(reporting, "SELECT username FROM users")
    assert _refused(reporting, "SELECT display_name, birth_date FROM patients WHERE id = %s", patient)
    assert _refused(reporting, "SELECT detail FROM audit_events")
    assert _refused(reporting, "SELECT value FROM observations")
    assert _refused(reporting, "SELECT plan FROM care_plans")
    assert _refused(reporting, "DELETE FROM consents WHERE patient_id = %s", patient)
    assert _refused(reporting, "INSERT INTO feedback (patient_id, score) VALUES (%s, 10)", patient)
    # What a dashboard asks: readings per metric, consent coverage, hourly rollups.
    reporting.execute("SELECT metric, count(*) FROM observations WHERE ts > now() - interval '1 hour' GROUP BY 1")
    assert reporting.execute(
        "SELECT count(*) FROM consents WHERE patient_id = %s AND withdrawn_at IS NULL", (patient,)
    ).fetchone() == (1,)
    reporting.execute("SELECT patient_id, metric, bucket, mean FROM observations_hourly LIMIT 1")


def test_alerts_never_reads_secrets_or_health_values(login: dict[str, psycopg.Connection]) -> None:
    alerts = login["alerts"]
    assert alerts.execute("SELECT 1").fetchone() == (1,)
    for table in ("audit_events", "sessions"):
        assert _refused(alerts, f"SELECT count(*) FROM {table}"), table  # noqa: S608 - fixed table names
    # The reminder loop (0014) sees when a reading or dose came, never its value, and the plan
    # but not who changed it.
    assert _refused(alerts, "SELECT value FROM observations")
    assert _refused(alerts, "SELECT device_id FROM observations")
    assert _refused(alerts, "SELECT updated_by FROM care_plans")
    assert _refused(alerts, "UPDATE care_plans SET plan = '{}'")
    assert _refused(alerts, "UPDATE patient_preferences SET email = NULL")
    assert _refused(alerts, "UPDATE reminders SET seen_at = now()")
    alerts.execute("SELECT ts FROM observations WHERE patient_id = 'x' AND metric = 'spo2' LIMIT 1")
    alerts.execute("SELECT patient_id, plan FROM care_plans LIMIT 1")
    assert _refused(alerts, "SELECT password_hash FROM users")
    assert _refused(alerts, "SELECT display_name FROM patients")
    assert _refused(alerts, "UPDATE alerts SET acknowledged_by = NULL")
    assert _refused(alerts, "UPDATE alerts SET resolved_by = NULL")
    assert _refused(alerts, "DELETE FROM alert_events")
    assert _refused(alerts, "UPDATE alert_events SET note = 'x'")
    # What alerts/repository.py asks (the full path is tests/alerts/test_alert_service.py).
    alerts.execute("SELECT id, state, next_escalation_at FROM alerts WHERE state = 'open' LIMIT 1")
    alerts.execute("SELECT email, quiet_start FROM notification_settings LIMIT 1")
