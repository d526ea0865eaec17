"""Least privilege in the database (ARCHITECTURE.md §7, ADR 0016).

Every privilege any role holds on the platform's database (the database itself, its schemas,
tables, views, columns, sequences and functions, default privileges, role memberships and
role attributes) is read from the catalog and compared with the map below, which says why
each process needs it. A grant the map does not name fails the test, and so does one it
names that is missing. What each process's own login may and may not do, tried as that
login, is in test_db_logins.py.

Extension objects (TimescaleDB's schemas and functions) are not ours and are left out;
hypertable chunks must carry exactly their hypertable's table privileges.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from infra.stack import DB_ROLES, Secrets, Stack
from streams.storage.repository import store_rows
from tests.helpers import create_patient

GROUPS = tuple(DB_ROLES.values())
LOGINS = tuple(f"{group}_login" for group in GROUPS)

# role -> (privilege, object). "table(a, b)" stands for one column grant per column.
EXPECTED: dict[str, list[tuple[str, str]]] = {
    "rpm_api": [
        ("CONNECT", "database"),
        ("USAGE", "schema public"),
        # api/auth/repository.py: the user a login or a token names; rehash of an old hash.
        ("SELECT", "users(id, username, password_hash, role, display_name, patient_id, disabled)"),
        ("UPDATE", "users(password_hash)"),
        # api/access/repository.py; 0015: the care teams' patients who share with them (ADR 0024)
        ("SELECT", "patients(id)"),
        ("SELECT", "care_team_members(care_team_id, user_id)"),
        ("SELECT", "view care_team_patients_shared"),
        # api/observations/repository.py
        ("SELECT", "observations(patient_id, metric, ts, value, device_id)"),
        # api/audit/repository.py: insert only, not the columns the database fills
        ("INSERT", "audit_events(actor_id, actor_role, patient_id, action, resource, outcome, detail)"),
        ("USAGE", "sequence audit_events_id_seq"),
        # api/checkins/repository.py: consent covers the check-in
        ("SELECT", "consents(patient_id, scope, granted_at, withdrawn_at)"),
        # 0012, api/consents/repository.py: consent tiers with history; a withdrawal closes
        # the open grant (a trigger refuses any other change), a new grant is a new row
        ("SELECT", "consents(id, document_version, recorded_by)"),
        ("INSERT", "consents(patient_id, scope, granted_at, document_version, recorded_by)"),
        ("UPDATE", "consents(withdrawn_at)"),
        ("USAGE", "sequence consents_id_seq"),
        # api/auth/repository.py: sessions and their rotating refresh tokens (0003); never
        # DELETE, never expires_at after the login
        ("SELECT", "sessions(id, user_id, created_at, expires_at, revoked_at, revoked_reason)"),
        ("INSERT", "sessions(id, user_id, created_at, expires_at, last_refreshed_at, client_ip)"),
        ("UPDATE", "sessions(last_refreshed_at, revoked_at, revoked_reason)"),
        ("SELECT", "refresh_tokens(token_hash, session_id, expires_at, replaced_at)"),
        ("INSERT", "refresh_tokens(token_hash, session_id, issued_at, expires_at)"),
        ("UPDATE", "refresh_tokens(replaced_at)"),
        # 0010, api/careplans/repository.py: the plan and its next version; the what-if
        # replays stored readings (dose_id of medication events)
        ("SELECT", "care_plans(patient_id, version, plan, updated_at, updated_by)"),
        ("INSERT", "care_plans(patient_id, version, plan, updated_at, updated_by)"),
        ("UPDATE", "care_plans(version, plan, updated_at, updated_by)"),
        ("SELECT", "observations(dose_id)"),
        # 0010, api/devices/repository.py and core/clients/provisioning.py: provision, revoke, bind, list
        ("SELECT", "devices(id, device_class, model, created_at, revoked_at)"),
        ("INSERT", "devices(id, device_class, model)"),
        ("UPDATE", "devices(device_class, revoked_at)"),
        ("SELECT", "device_bindings(id, device_id, patient_id, valid_from, valid_to)"),
        ("INSERT", "device_bindings(device_id, patient_id, valid_from, valid_to)"),
        ("UPDATE", "device_bindings(valid_to)"),
        ("USAGE", "sequence device_bindings_id_seq"),
        # 0011, api/patients/repository.py: the patient's name and each device's battery
        ("SELECT", "patients(display_name)"),
        ("SELECT", "devices(battery, battery_at)"),
        # 0010, api/admin/repository.py: the admins' audit query
        ("SELECT", "audit_events(id, at, actor_id, actor_role, patient_id, action, resource, outcome, detail)"),
        # 0010, api/access/repository.py: break-glass grants
        ("SELECT", "break_glass_grants(id, user_id, patient_id, reason, granted_at, expires_at)"),
        ("INSERT", "break_glass_grants(user_id, patient_id, reason, expires_at)"),
        # 0009, api/alerts/repository.py: the inbox, one alert, precision figures; a person's
        # moves (never severity, evidence, escalation tier); the history; cancel what is queued
        (
            "SELECT",
            "alerts(id, patient_id, rule, severity, state, title, evidence, opened_at, updated_at, resolved_at, "
            "disposition, detection_ids, repeat_count, last_triggered_at, acknowledged_at, acknowledged_by, "
            "assigned_to, snoozed_until, resolved_by, resolution_note, escalation_tier, next_escalation_at)",
        ),
        (
            "UPDATE",
            "alerts(state, updated_at, acknowledged_at, acknowledged_by, assigned_to, snoozed_until, resolved_at, "
            "resolved_by, disposition, resolution_note, next_escalation_at)",
        ),
        ("SELECT", "alert_events(id, alert_id, patient_id, kind, at, actor_id, from_state, to_state, note, detail)"),
        ("INSERT", "alert_events(alert_id, at, actor_id, from_state, to_state, note, patient_id, kind, detail)"),
        ("USAGE", "sequence alert_events_id_seq"),
        ("SELECT", "notifications(alert_id, state)"),
        ("UPDATE", "notifications(state)"),
        # 0013, api/accesslog/repository.py: a patient flags an access; an admin reviews it
        (
            "SELECT",
            "privacy_flags(id, audit_event_id, patient_id, note, flagged_at, state, reviewed_by, reviewed_at, "
            "outcome_note)",
        ),
        ("INSERT", "privacy_flags(audit_event_id, patient_id, note)"),
        ("UPDATE", "privacy_flags(state, reviewed_by, reviewed_at, outcome_note)"),
        ("USAGE", "sequence privacy_flags_id_seq"),
        # 0014, api/reminders/repository.py: a patient's own reminders (marked seen) and profile
        (
            "SELECT",
            "reminders(id, patient_id, schedule_key, slot_key, kind, metric, dose_id, channel, follow_up, "
            "scheduled_at, window_start, window_end, due_at, state, outcome, sent_at, settled_at, seen_at)",
        ),
        ("UPDATE", "reminders(seen_at)"),
        ("SELECT", "patient_preferences(patient_id, email, channels, quiet_start, quiet_end, time_zone, updated_at)"),
        ("INSERT", "patient_preferences(patient_id, email, channels, quiet_start, quiet_end, time_zone, updated_at)"),
        ("UPDATE", "patient_preferences(email, channels, quiet_start, quiet_end, time_zone, updated_at)"),
        # 0016: the hourly and daily rollups (continuous aggregates where the edition has them)
        ("SELECT", "view observations_hourly"),
        ("SELECT", "view observations_daily"),
    ],
    "rpm_ingest": [
        ("CONNECT", "database"),
        ("USAGE", "schema public"),
        # ingest/registry.py: the registry snapshot
        ("SELECT", "devices(id, revoked_at)"),
        ("SELECT", "device_bindings(device_id, patient_id, valid_from, valid_to)"),
        ("SELECT", "patients(id, enrolled_at)"),
        ("SELECT", "consents(patient_id, scope, granted_at, withdrawn_at)"),
    ],
    "rpm_streams": [
        ("CONNECT", "database"),
        ("TEMPORARY", "database"),  # the storage lane's staging tables
        ("USAGE", "schema public"),
        # streams/storage/repository.py: CREATE TEMP TABLE ... (LIKE t) needs SELECT on t
        ("SELECT", "table observations"),
        ("INSERT", "table observations"),
        ("SELECT", "table quarantined_readings"),
        ("INSERT", "table quarantined_readings"),
        # streams/detection/repository.py: device classes for the silence detector
        ("SELECT", "devices(id, device_class)"),
        # 0018, streams/detection/repository.py: who withdrew collection (the timer skips them)
        ("SELECT", "consents(patient_id, scope, withdrawn_at)"),
        # 0011, streams/devices: the battery a device last reported, a newer report only
        ("SELECT", "devices(battery_at)"),
        ("UPDATE", "devices(battery, battery_at)"),
    ],
    "rpm_alerts": [
        ("CONNECT", "database"),
        ("USAGE", "schema public"),
        # alerts/repository.py (0007): detections already seen
        ("SELECT", "alert_detections(detection_id)"),
        ("INSERT", "alert_detections(detection_id, alert_id, patient_id, rule, kind)"),
        # the unresolved alert of (patient, rule), due lists, figures; opening, re-trigger,
        # clear, escalation, snooze end; never who acknowledged, resolved or was assigned
        (
            "SELECT",
            "alerts(id, patient_id, rule, severity, state, title, evidence, opened_at, updated_at, resolved_at, "
            "disposition, detection_ids, repeat_count, last_triggered_at, acknowledged_at, acknowledged_by, "
            "assigned_to, snoozed_until, resolved_by, resolution_note, escalation_tier, next_escalation_at)",
        ),
        (
            "INSERT",
            "alerts(id, patient_id, rule, severity, state, title, evidence, opened_at, updated_at, detection_ids, "
            "repeat_count, last_triggered_at, escalation_tier, next_escalation_at)",
        ),
        (
            "UPDATE",
            "alerts(severity, state, title, evidence, updated_at, resolved_at, disposition, detection_ids, "
            "repeat_count, last_triggered_at, snoozed_until, escalation_tier, next_escalation_at)",
        ),
        # the history of every transition it makes
        ("INSERT", "alert_events(alert_id, at, actor_id, from_state, to_state, note, patient_id, kind, detail)"),
        ("USAGE", "sequence alert_events_id_seq"),
        # who is notified: care teams, tiers, members, addresses, webhook ids (not their secrets)
        ("SELECT", "view care_team_patients_shared"),
        ("SELECT", "care_team_members(care_team_id, user_id)"),
        ("SELECT", "users(id, role, disabled)"),
        ("SELECT", "escalation_tiers(care_team_id, tier, after_s, min_severity, channels, recipients)"),
        ("SELECT", "notification_settings(user_id, email, quiet_start, quiet_end, time_zone)"),
        ("SELECT", "webhooks(id, care_team_id, enabled)"),
        # the outbox: queue a tier; a clear cancels what is still queued
        ("INSERT", "notifications(alert_id, tier, channel, recipient, due_at)"),
        ("USAGE", "sequence notifications_id_seq"),
        ("SELECT", "notifications(alert_id, state)"),
        ("UPDATE", "notifications(state)"),
        # alerts/notify/repository.py (0008): claim due rows, settle them, read the webhook's secret
        ("SELECT", "notifications(id, alert_id, tier, channel, recipient, state, due_at, attempts)"),
        ("UPDATE", "notifications(state, due_at, attempts, last_error, sent_at)"),
        ("SELECT", "webhooks(id, url, secret, enabled)"),
        # alerts per patient-day
        ("SELECT", "patients(id)"),
        # 0014, alerts/reminders/repository.py: plans with schedules, whether a slot's reading
        # came, the patient's choices; plan, send, cancel and settle reminders
        ("SELECT", "care_plans(patient_id, version, plan)"),
        ("SELECT", "observations(patient_id, metric, ts, dose_id)"),
        ("SELECT", "patient_preferences(patient_id, email, channels, quiet_start, quiet_end, time_zone)"),
        (
            "SELECT",
            "reminders(id, patient_id, schedule_key, slot_key, kind, metric, dose_id, channel, follow_up, "
            "scheduled_at, window_start, window_end, due_at, state, outcome, attempts, sent_at)",
        ),
        (
            "INSERT",
            "reminders(patient_id, schedule_key, slot_key, kind, metric, dose_id, channel, follow_up, "
            "scheduled_at, window_start, window_end, due_at)",
        ),
        ("UPDATE", "reminders(due_at, state, outcome, attempts, last_error, sent_at, settled_at)"),
        ("USAGE", "sequence reminders_id_seq"),
        # 0016, alerts/retention: drop chunks older than the retention period, or keep the
        # edition's retention policy; both refuse a period below the floor (ADR 0028)
        ("EXECUTE", "function drop_observation_chunks(timestamp with time zone)"),
        ("EXECUTE", "function set_observation_retention_policy(interval)"),
    ],
    "rpm_reporting": [
        ("CONNECT", "database"),
        ("USAGE", "schema public"),
        ("SELECT", "observations(metric, ts, received_at)"),
        ("SELECT", "view observations_hourly"),
        ("SELECT", "view observations_daily"),
        ("SELECT", "quarantined_readings(metric, ts, received_at, reviewed_at)"),
        (
            "SELECT",
            "alerts(id, patient_id, rule, severity, state, opened_at, updated_at, resolved_at, disposition)",
        ),
        ("SELECT", "alert_events(alert_id, at, from_state, to_state)"),
        ("SELECT", "devices(id, device_class, created_at, revoked_at)"),
        ("SELECT", "device_bindings(device_id, patient_id, valid_from, valid_to)"),
        ("SELECT", "patients(id, enrolled_at)"),
        ("SELECT", "consents(patient_id, scope, granted_at, withdrawn_at)"),
        ("SELECT", "feedback(survey_id, submitted_at, score)"),
        ("SELECT", "audit_events(at, action, resource, outcome)"),
        # 0017, the Grafana dashboards (infra/grafana): device fleet, escalations, engagement,
        # and the care plan's limits for the patient drill-down (a view of just those numbers)
        ("SELECT", "observations(device_id, seq)"),
        ("SELECT", "devices(battery, battery_at)"),
        ("SELECT", "notifications(alert_id, tier, channel, state, created_at, sent_at)"),
        ("SELECT", "reminders(kind, metric, channel, follow_up, scheduled_at, state, outcome)"),
        ("SELECT", "audit_events(actor_role)"),
        ("SELECT", "view care_plan_limits"),
    ],
    # The shared role of old, and everyone: nothing.
    "rpm_app": [],
    "PUBLIC": [],
}

_COLUMNS = re.compile(r"^(\w+)\((.*)\)$")


def _expand(grants: dict[str, list[tuple[str, str]]]) -> set[tuple[str, str, str]]:
    out: set[tuple[str, str, str]] = set()
    for role, entries in grants.items():
        for privilege, target in entries:
            match = _COLUMNS.match(target)
            if match is None:
                out.add((role, privilege, target))
                continue
            for column in match.group(2).split(","):
                out.add((role, privilege, f"column {match.group(1)}.{column.strip()}"))
    return out


# Every grant on the current database and on what lives in our schemas, as (grantee, privilege,
# object); the owner's own privileges are left out (it owns everything and runs migrations).
_GRANTS_SQL = r"""
WITH schemas AS (
    SELECT n.oid, n.nspname, n.nspowner, n.nspacl
    FROM pg_namespace n
    WHERE n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
      AND NOT EXISTS (SELECT FROM pg_depend d
                      WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid AND d.deptype = 'e')
),
rels AS (
    SELECT c.oid, c.relname, c.relkind, c.relowner, c.relacl
    FROM pg_class c JOIN schemas s ON s.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      AND NOT EXISTS (SELECT FROM pg_depend d
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
),
grants AS (
    SELECT 'database' AS object, a.grantee, a.privilege_type, d.datdba AS owner
    FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
    WHERE d.datname = current_database()
    UNION ALL
    SELECT 'schema ' || s.nspname, a.grantee, a.privilege_type, s.nspowner
    FROM schemas s, aclexplode(coalesce(s.nspacl, acldefault('n', s.nspowner))) a
    UNION ALL
    SELECT CASE WHEN r.relkind = 'S' THEN 'sequence ' WHEN r.relkind IN ('v', 'm') THEN 'view ' ELSE 'table ' END
           || r.relname,
           a.grantee, a.privilege_type, r.relowner
    FROM rels r,
         aclexplode(coalesce(r.relacl, acldefault(CASE WHEN r.relkind = 'S' THEN 's' ELSE 'r' END::"char",
                                                  r.relowner))) a
    UNION ALL
    SELECT 'column ' || r.relname || '.' || att.attname, a.grantee, a.privilege_type, r.relowner
    FROM rels r
    JOIN pg_attribute att ON att.attrelid = r.oid AND att.attnum > 0 AND NOT att.attisdropped,
         aclexplode(att.attacl) a
    UNION ALL
    SELECT 'function ' || p.oid::regprocedure::text, a.grantee, a.privilege_type, p.proowner
    FROM pg_proc p JOIN schemas s ON s.oid = p.pronamespace,
         aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
    WHERE NOT EXISTS (SELECT FROM pg_depend d
                      WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
    UNION ALL
    SELECT 'default privileges of ' || pg_get_userbyid(da.defaclrole) || ' on '
           || CASE da.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences' WHEN 'f' THEN 'functions'
                                    WHEN 'T' THEN 'types' ELSE 'schemas' END,
           a.grantee, a.privilege_type, da.defaclrole
    FROM pg_default_acl da, aclexplode(da.defaclacl) a
)
SELECT CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(g.grantee) END, g.privilege_type, g.object
FROM grants g
WHERE g.grantee <> g.owner
"""


def _grants(conn: psycopg.Connection) -> set[tuple[str, str, str]]:
    return {(str(r), str(p), str(o)) for r, p, o in conn.execute(_GRANTS_SQL).fetchall()}


def _report(unexpected: set[tuple[str, str, str]], missing: set[tuple[str, str, str]]) -> str:
    lines = [f"  not needed: {r} {p} ON {o}" for r, p, o in sorted(unexpected)]
    lines += [f"  missing:    {r} {p} ON {o}" for r, p, o in sorted(missing)]
    return "grants differ from tests/infra/test_db_grants.py EXPECTED:\n" + "\n".join(lines)


def test_every_grant_is_one_the_code_needs(db: psycopg.Connection) -> None:
    expected = _expand(EXPECTED)
    actual = _grants(db)
    assert actual == expected, _report(actual - expected, expected - actual)


def test_the_listing_sees_a_grant_the_map_does_not_name(stack: Stack) -> None:
    """The comparison above can fail: a column grant made in a transaction shows up."""
    with psycopg.connect(stack.admin_db_url) as conn:
        conn.execute("GRANT UPDATE (role) ON users TO rpm_api")
        conn.execute("GRANT EXECUTE ON FUNCTION audit_events_append_only() TO rpm_reporting")
        seen = _grants(conn)
        conn.rollback()
    assert ("rpm_api", "UPDATE", "column users.role") in seen
    assert ("rpm_reporting", "EXECUTE", "function audit_events_append_only()") in seen


def test_security_definer_functions_fix_their_search_path(db: psycopg.Connection) -> None:
    """A function running with its owner's rights must not resolve names through a schema
    its caller controls."""
    loose = db.execute(
        """SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE p.prosecdef AND n.nspname = 'public'
             AND NOT EXISTS (SELECT FROM unnest(coalesce(p.proconfig, '{}')) c WHERE c LIKE 'search\\_path=%')"""
    ).fetchall()
    assert loose == []


def test_roles_memberships_and_attributes(db: psycopg.Connection) -> None:
    owner = db.execute("SELECT current_user").fetchone()
    assert owner is not None
    roles = {
        str(name): (bool(login), bool(power))
        for name, login, power in db.execute(
            """SELECT rolname, rolcanlogin,
                      rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls
               FROM pg_roles WHERE rolname !~ '^pg_' AND rolname <> %s""",
            (owner[0],),
        ).fetchall()
    }
    expected = {"rpm_app": (False, False)}
    expected |= dict.fromkeys(GROUPS, (False, False))
    expected |= dict.fromkeys(LOGINS, (True, False))
    assert roles == expected
    members = set(
        db.execute(
            """SELECT pg_get_userbyid(member), pg_get_userbyid(roleid) FROM pg_auth_members
               WHERE pg_get_userbyid(member) !~ '^pg_'"""
        ).fetchall()
    )
    assert members == {(f"{group}_login", group) for group in GROUPS}


def test_chunks_carry_their_hypertable_privileges(stack: Stack, db: psycopg.Connection) -> None:
    patient = create_patient(db)
    # At least one chunk, stored by the storage lane's login.
    now = datetime.now(UTC)
    row = (patient, "dev-grants", "heart_rate", now, 61.0, now, 1, None)

    async def store() -> None:
        async with await psycopg.AsyncConnection.connect(stack.db_url("streams")) as conn, conn.transaction():
            await store_rows(conn, "observations", [row])

    asyncio.run(store())
    differing = db.execute(
        """SELECT format('%I.%I', c.chunk_schema, c.chunk_name)
           FROM timescaledb_information.chunks c
           JOIN pg_class h ON h.oid = format('%I.%I', c.hypertable_schema, c.hypertable_name)::regclass
           JOIN pg_class k ON k.oid = format('%I.%I', c.chunk_schema, c.chunk_name)::regclass
           WHERE k.relacl IS DISTINCT FROM h.relacl"""
    ).fetchall()
    chunks = db.execute("SELECT count(*) FROM timescaledb_information.chunks").fetchone()
    assert chunks is not None
    assert chunks[0] >= 1
    assert differing == []


def test_a_secrets_file_from_before_the_process_logins_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    old = {
        "pg_superuser_password": "super-1",
        "pg_app_password": "app-1",
        "mqtt_admin_password": "admin-1",
        "mqtt_ingest_password": "ingest-1",
        "jwt_secret": "jwt-1",
    }
    path.write_text(json.dumps(old))
    loaded = Secrets.load_or_create(path)
    assert (loaded.pg_superuser_password, loaded.jwt_secret) == ("super-1", "jwt-1")
    assert sorted(loaded.pg_role_passwords) == sorted(DB_ROLES)
    assert len(set(loaded.pg_role_passwords.values())) == len(DB_ROLES)
    # Written back, so the next start uses the same passwords; the old key stays.
    again = Secrets.load_or_create(path)
    assert again.pg_role_passwords == loaded.pg_role_passwords
    assert json.loads(path.read_text())["pg_app_password"] == "app-1"
    assert path.stat().st_mode & 0o777 == 0o600
