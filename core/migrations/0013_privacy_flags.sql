-- Who viewed my record (issue 12 item 5; ADR 0025): a patient flags an access to their record
-- that they do not recognise; the flag waits in the admins' (privacy officer's) queue until
-- it is reviewed with an outcome note. Exactly what api/accesslog uses, as the API's login;
-- tests/infra/test_db_grants.py holds the same list.

CREATE TABLE IF NOT EXISTS privacy_flags (
    id              bigserial PRIMARY KEY,
    -- No foreign key: a table that references audit_events would turn a TRUNCATE of it into
    -- "cannot truncate a referenced table" before its append-only trigger says why. The API
    -- inserts only an event it has just read as this patient's, and events are never deleted.
    audit_event_id  bigint NOT NULL,
    patient_id      text NOT NULL REFERENCES patients (id),
    note            text CHECK (note IS NULL OR length(note) <= 1000),
    flagged_at      timestamptz NOT NULL DEFAULT now(),
    state           text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'reviewed')),
    reviewed_by     uuid REFERENCES users (id),
    reviewed_at     timestamptz,
    outcome_note    text CHECK (outcome_note IS NULL OR length(outcome_note) BETWEEN 1 AND 2000),
    -- A reviewed flag says who reviewed it, when and what was found; an open one none of it.
    CHECK ((state = 'open') = (reviewed_by IS NULL AND reviewed_at IS NULL AND outcome_note IS NULL)),
    CHECK (state = 'open' OR (reviewed_by IS NOT NULL AND reviewed_at IS NOT NULL AND outcome_note IS NOT NULL))
);
-- One open flag per audit event: a second "I don't recognise this" joins the first.
CREATE UNIQUE INDEX IF NOT EXISTS privacy_flags_one_open ON privacy_flags (audit_event_id) WHERE state = 'open';
-- The queue (open first, oldest first) and the patient's log (the flags of a page of events).
CREATE INDEX IF NOT EXISTS privacy_flags_queue ON privacy_flags (state, flagged_at, id);
CREATE INDEX IF NOT EXISTS privacy_flags_patient ON privacy_flags (patient_id, audit_event_id);

-- api/accesslog/repository.py: a patient flags an event of their own record; an admin reviews.
-- Never DELETE, never move who flagged what or when.
GRANT SELECT (id, audit_event_id, patient_id, note, flagged_at, state, reviewed_by, reviewed_at, outcome_note)
    ON privacy_flags TO rpm_api;
GRANT INSERT (audit_event_id, patient_id, note) ON privacy_flags TO rpm_api;
GRANT UPDATE (state, reviewed_by, reviewed_at, outcome_note) ON privacy_flags TO rpm_api;
GRANT USAGE ON SEQUENCE privacy_flags_id_seq TO rpm_api;
