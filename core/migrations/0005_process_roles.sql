-- One database role per process, each granted only what its code uses (ARCHITECTURE.md §7,
-- ADR 0016). The roles are NOLOGIN groups; each deployment creates a LOGIN role per process
-- with its own password and makes it a member (the local stack does: infra/stack.py).
-- tests/infra/test_db_grants.py lists every grant from the catalog and compares it with
-- its expected map: a migration that adds a table or a column a process uses grants it here
-- or in its own file, and adds it to that map.

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['rpm_api', 'rpm_ingest', 'rpm_streams', 'rpm_alerts', 'rpm_reporting'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
        -- A group role never logs in and holds nothing beyond its grants.
        EXECUTE format('ALTER ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', r);
    END LOOP;
END
$$;

-- The shared role of old: nothing left, and it may no longer log in. It stays as an empty
-- role so that an older migration granting to it still applies (the grants test flags it).
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM rpm_app;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM rpm_app;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM rpm_app;
REVOKE ALL ON SCHEMA public FROM rpm_app;
ALTER ROLE rpm_app NOLOGIN;

-- Nobody gets anything by default: the database and the schema are reached through the
-- roles' own grants, and functions we create are not executable by everyone.
DO $$
BEGIN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM rpm_app', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO rpm_api, rpm_ingest, rpm_streams, rpm_alerts, rpm_reporting',
                   current_database());
    -- The storage lane stages each batch in a temporary table (streams/storage/repository.py).
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO rpm_streams', current_database());
END
$$;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO rpm_api, rpm_ingest, rpm_streams, rpm_alerts, rpm_reporting;
REVOKE EXECUTE ON FUNCTION audit_events_append_only() FROM PUBLIC;
-- Functions the migration owner creates from now on: not executable by PUBLIC (a default per
-- schema could only add to the global one, so this one is global).
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- Audit rows: the database, not the writer, says when a row was written and with which
-- database login (`db_role`); the API may insert only the other columns. Older rows keep
-- db_role NULL (unknown). No role but the owner may UPDATE, DELETE or TRUNCATE (the
-- trigger of 0001 refuses UPDATE and DELETE even to a role that would be granted them).
ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS db_role text;
ALTER TABLE audit_events ALTER COLUMN db_role SET DEFAULT session_user;
CREATE FUNCTION audit_events_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END
$$;
REVOKE EXECUTE ON FUNCTION audit_events_no_truncate() FROM PUBLIC;
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_no_truncate();

-- --- api (api/**/repository.py) -----------------------------------------------------------
-- auth: the user a login or a token names, and the rehash of an outdated password hash.
-- Not role, disabled, username, patient_id: the API cannot make anyone an admin.
GRANT SELECT (id, username, password_hash, role, display_name, patient_id, disabled) ON users TO rpm_api;
GRANT UPDATE (password_hash) ON users TO rpm_api;
-- access: whether a patient exists and whether a clinician's care team has them.
GRANT SELECT (id) ON patients TO rpm_api;
GRANT SELECT (care_team_id, user_id) ON care_team_members TO rpm_api;
GRANT SELECT (care_team_id, patient_id) ON care_team_patients TO rpm_api;
-- observations: the read endpoint.
GRANT SELECT (patient_id, metric, ts, value, device_id) ON observations TO rpm_api;
-- checkins: whether the patient's consent covers a check-in.
GRANT SELECT (patient_id, scope, granted_at, withdrawn_at) ON consents TO rpm_api;
-- audit: insert only, and not the columns the database fills (id, at, db_role).
GRANT INSERT (actor_id, actor_role, patient_id, action, resource, outcome, detail) ON audit_events TO rpm_api;
GRANT USAGE ON SEQUENCE audit_events_id_seq TO rpm_api;
-- sessions and refresh tokens (0003, api/auth/repository.py): open a session, rotate its
-- refresh token, end it. Never DELETE, never move expires_at (the absolute limit). Written
-- so that this file also applies where 0003 is not (yet) present.
DO $$
BEGIN
    IF to_regclass('public.sessions') IS NOT NULL THEN
        GRANT SELECT (id, user_id, created_at, expires_at, revoked_at, revoked_reason) ON sessions TO rpm_api;
        GRANT INSERT (id, user_id, created_at, expires_at, last_refreshed_at, client_ip) ON sessions TO rpm_api;
        GRANT UPDATE (last_refreshed_at, revoked_at, revoked_reason) ON sessions TO rpm_api;
        GRANT SELECT (token_hash, session_id, expires_at, replaced_at) ON refresh_tokens TO rpm_api;
        GRANT INSERT (token_hash, session_id, issued_at, expires_at) ON refresh_tokens TO rpm_api;
        GRANT UPDATE (replaced_at) ON refresh_tokens TO rpm_api;
        -- A trigger function: it runs when `users.disabled` changes, nobody calls it.
        REVOKE EXECUTE ON FUNCTION sessions_end_when_user_disabled() FROM PUBLIC;
    END IF;
END
$$;

-- --- ingest (ingest/registry.py: the registry snapshot) -----------------------------------
GRANT SELECT (id, revoked_at) ON devices TO rpm_ingest;
GRANT SELECT (device_id, patient_id, valid_from, valid_to) ON device_bindings TO rpm_ingest;
GRANT SELECT (id, enrolled_at) ON patients TO rpm_ingest;
GRANT SELECT (patient_id, scope, granted_at, withdrawn_at) ON consents TO rpm_ingest;

-- --- streams (streams/storage/repository.py, streams/detection/repository.py) -------------
-- Storage: COPY into a temporary table made LIKE the target (LIKE needs SELECT on the whole
-- table), then INSERT ... ON CONFLICT DO NOTHING. No UPDATE or DELETE: a reading, once
-- stored, is never changed by the platform.
GRANT SELECT, INSERT ON observations TO rpm_streams;
GRANT SELECT, INSERT ON quarantined_readings TO rpm_streams;
-- Detection: a device's class decides how long it may stay silent.
GRANT SELECT (id, device_class) ON devices TO rpm_streams;

-- --- alerts: the service has no code yet; it gets its grants with its code. --------------

-- --- reporting (Grafana, read-only): what the operations dashboards count, never names,
-- birth dates, password hashes, free text, audit actors or care-plan contents. The rollup
-- views run with their owner's rights, so they need no grant on the hypertable.
GRANT SELECT (metric, ts, received_at) ON observations TO rpm_reporting;
GRANT SELECT ON observations_hourly, observations_daily TO rpm_reporting;
GRANT SELECT (metric, ts, received_at, reviewed_at) ON quarantined_readings TO rpm_reporting;
GRANT SELECT (id, patient_id, rule, severity, state, opened_at, updated_at, resolved_at, disposition)
    ON alerts TO rpm_reporting;
GRANT SELECT (alert_id, at, from_state, to_state) ON alert_events TO rpm_reporting;
GRANT SELECT (id, device_class, created_at, revoked_at) ON devices TO rpm_reporting;
GRANT SELECT (device_id, patient_id, valid_from, valid_to) ON device_bindings TO rpm_reporting;
GRANT SELECT (id, enrolled_at) ON patients TO rpm_reporting;
GRANT SELECT (patient_id, scope, granted_at, withdrawn_at) ON consents TO rpm_reporting;
GRANT SELECT (survey_id, submitted_at, score) ON feedback TO rpm_reporting;
GRANT SELECT (at, action, resource, outcome) ON audit_events TO rpm_reporting;
