-- Base schema: identities, patients, devices and bindings, care plans, consent, observations
-- (hypertable), alerts, audit events, surveys and feedback. ARCHITECTURE.md §5.

CREATE EXTENSION IF NOT EXISTS timescaledb;
CREATE EXTENSION IF NOT EXISTS btree_gist;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rpm_app') THEN
        CREATE ROLE rpm_app NOLOGIN;
    END IF;
END
$$;

CREATE TABLE patients (
    id            text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    display_name  text NOT NULL,
    birth_date    date,
    enrolled_at   timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username       text NOT NULL UNIQUE,
    password_hash  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('patient', 'clinician', 'admin', 'ops')),
    display_name   text NOT NULL,
    patient_id     text REFERENCES patients (id),
    disabled       boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'patient') = (patient_id IS NOT NULL))
);

CREATE TABLE care_teams (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE care_team_members (
    care_team_id  uuid NOT NULL REFERENCES care_teams (id) ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (care_team_id, user_id)
);

CREATE TABLE care_team_patients (
    care_team_id  uuid NOT NULL REFERENCES care_teams (id) ON DELETE CASCADE,
    patient_id    text NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    PRIMARY KEY (care_team_id, patient_id)
);
CREATE INDEX care_team_patients_patient ON care_team_patients (patient_id);

CREATE TABLE devices (
    id            text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    device_class  text NOT NULL CHECK (device_class IN
                    ('wearable', 'bp_cuff', 'pulse_oximeter', 'scale', 'glucometer', 'pill_bottle', 'thermometer')),
    model         text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

-- A device belongs to one patient at a time; bindings never overlap.
CREATE TABLE device_bindings (
    id          bigserial PRIMARY KEY,
    device_id   text NOT NULL REFERENCES devices (id),
    patient_id  text NOT NULL REFERENCES patients (id),
    valid_from  timestamptz NOT NULL,
    valid_to    timestamptz,
    CHECK (valid_to IS NULL OR valid_to > valid_from),
    EXCLUDE USING gist (device_id WITH =, tstzrange(valid_from, valid_to) WITH &&)
);

CREATE TABLE care_plans (
    patient_id  text PRIMARY KEY REFERENCES patients (id),
    version     integer NOT NULL DEFAULT 1,
    plan        jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  uuid REFERENCES users (id)
);

CREATE TABLE consents (
    id            bigserial PRIMARY KEY,
    patient_id    text NOT NULL REFERENCES patients (id),
    scope         text NOT NULL DEFAULT 'remote_monitoring',
    granted_at    timestamptz NOT NULL,
    withdrawn_at  timestamptz,
    recorded_by   uuid REFERENCES users (id),
    CHECK (withdrawn_at IS NULL OR withdrawn_at >= granted_at)
);
CREATE INDEX consents_patient ON consents (patient_id, scope);

CREATE TABLE observations (
    patient_id   text NOT NULL,
    device_id    text NOT NULL,
    metric       text NOT NULL,
    ts           timestamptz NOT NULL,
    value        double precision NOT NULL
                 CHECK (value <> 'NaN'::float8 AND value < 'Infinity'::float8 AND value > '-Infinity'::float8),
    received_at  timestamptz NOT NULL,
    seq          bigint NOT NULL,
    dose_id      text,
    UNIQUE (patient_id, metric, ts)
);
SELECT create_hypertable('observations', 'ts', chunk_time_interval => interval '1 day');

-- Hourly and daily rollups. Plain views over time_bucket work on both editions; the
-- stack replaces them by continuous aggregates where the licence allows (ADR 0004).
CREATE VIEW observations_hourly AS
SELECT patient_id, metric, time_bucket('1 hour', ts) AS bucket,
       count(*) AS n, avg(value) AS mean, min(value) AS min, max(value) AS max
FROM observations GROUP BY patient_id, metric, bucket;

CREATE VIEW observations_daily AS
SELECT patient_id, metric, time_bucket('1 day', ts) AS bucket,
       count(*) AS n, avg(value) AS mean, min(value) AS min, max(value) AS max
FROM observations GROUP BY patient_id, metric, bucket;

CREATE TABLE alerts (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    patient_id   text NOT NULL REFERENCES patients (id),
    rule         text NOT NULL,
    severity     text NOT NULL CHECK (severity IN ('info', 'low', 'medium', 'high', 'critical')),
    state        text NOT NULL CHECK (state IN ('open', 'acknowledged', 'snoozed', 'resolved')),
    title        text NOT NULL,
    evidence     jsonb NOT NULL DEFAULT '{}'::jsonb,
    opened_at    timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    resolved_at  timestamptz,
    disposition  text CHECK (disposition IN ('actionable', 'not_actionable', 'false_reading', 'duplicate', 'other')),
    detection_ids text[] NOT NULL DEFAULT '{}'
);
-- One open alert per (patient, rule).
CREATE UNIQUE INDEX alerts_one_open ON alerts (patient_id, rule) WHERE state <> 'resolved';

CREATE TABLE alert_events (
    id        bigserial PRIMARY KEY,
    alert_id  uuid NOT NULL REFERENCES alerts (id),
    at        timestamptz NOT NULL DEFAULT now(),
    actor_id  uuid REFERENCES users (id),
    from_state text,
    to_state  text NOT NULL,
    note      text
);

-- Append-only: the application role may insert and read, never update or delete.
CREATE TABLE audit_events (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor_id    uuid,
    actor_role  text,
    patient_id  text,
    action      text NOT NULL,
    resource    text NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('allowed', 'denied', 'error')),
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_events_patient ON audit_events (patient_id, at DESC);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END
$$;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE TABLE surveys (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE,
    questions   jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE feedback (
    id           bigserial PRIMARY KEY,
    patient_id   text NOT NULL REFERENCES patients (id),
    survey_id    uuid REFERENCES surveys (id),
    submitted_at timestamptz NOT NULL DEFAULT now(),
    score        smallint CHECK (score BETWEEN 0 AND 10),
    answers      jsonb NOT NULL DEFAULT '{}'::jsonb,
    comment      text
);

GRANT USAGE ON SCHEMA public TO rpm_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO rpm_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO rpm_app;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM rpm_app;
REVOKE UPDATE, DELETE, TRUNCATE ON observations FROM rpm_app;
