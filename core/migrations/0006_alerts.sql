-- Alerts and the clinician's workspace (issue 11, ARCHITECTURE.md §6): the alert lifecycle,
-- its history, the detections already turned into alerts, escalation per care team, quiet
-- hours per clinician, the notification outbox (e-mail, webhooks) and break-glass access.
-- Grants per process are in later files, next to the code that uses them.

-- --- alerts: one open alert per (patient, rule) (0001's alerts_one_open) ---------------------
ALTER TABLE alerts DROP CONSTRAINT IF EXISTS alerts_disposition_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_disposition_check CHECK (disposition IN
    ('actionable', 'not_actionable', 'false_reading', 'duplicate', 'other', 'self_resolved'));
ALTER TABLE alerts
    ADD COLUMN repeat_count       integer NOT NULL DEFAULT 1 CHECK (repeat_count >= 1),
    ADD COLUMN last_triggered_at  timestamptz,
    ADD COLUMN acknowledged_at    timestamptz,
    ADD COLUMN acknowledged_by    uuid REFERENCES users (id),
    ADD COLUMN assigned_to        uuid REFERENCES users (id),
    ADD COLUMN snoozed_until      timestamptz,
    ADD COLUMN resolved_by        uuid REFERENCES users (id),
    ADD COLUMN resolution_note    text CHECK (length(resolution_note) <= 2000),
    ADD COLUMN escalation_tier    smallint NOT NULL DEFAULT 0 CHECK (escalation_tier >= 0),
    ADD COLUMN next_escalation_at timestamptz;
-- A resolved alert has a disposition, and 'other' needs a note.
ALTER TABLE alerts ADD CONSTRAINT alerts_resolved_has_disposition
    CHECK ((state = 'resolved') = (disposition IS NOT NULL AND resolved_at IS NOT NULL));
ALTER TABLE alerts ADD CONSTRAINT alerts_other_has_note
    CHECK (disposition IS DISTINCT FROM 'other' OR coalesce(length(trim(resolution_note)), 0) > 0);
ALTER TABLE alerts ADD CONSTRAINT alerts_snoozed_until
    CHECK ((state = 'snoozed') = (snoozed_until IS NOT NULL));
-- The inbox: a care team's open alerts by severity and age; a patient's alerts.
CREATE INDEX alerts_patient_state ON alerts (patient_id, state, opened_at DESC);
CREATE INDEX alerts_unresolved ON alerts (opened_at DESC) WHERE state <> 'resolved';
-- The escalation timer's due list, and the snooze expiry's.
CREATE INDEX alerts_escalation_due ON alerts (next_escalation_at) WHERE next_escalation_at IS NOT NULL;
CREATE INDEX alerts_snooze_due ON alerts (snoozed_until) WHERE state = 'snoozed';

-- --- history: every transition, with who (actor_id; NULL = the platform), when and why --------
ALTER TABLE alert_events
    ADD COLUMN patient_id text,
    ADD COLUMN kind       text NOT NULL DEFAULT 'transition' CHECK (kind IN
        ('opened', 'retriggered', 'acknowledged', 'snoozed', 'unsnoozed', 'assigned', 'escalated',
         'resolved', 'note', 'notified', 'transition')),
    ADD COLUMN detail     jsonb NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE alert_events ADD CONSTRAINT alert_events_note_length CHECK (length(note) <= 2000);
CREATE INDEX alert_events_alert ON alert_events (alert_id, id);
CREATE INDEX alert_events_patient ON alert_events (patient_id, id);

-- Every new history row is pushed to listeners (API processes fan it out to open inboxes over
-- server-sent events; the event id is alert_events.id, so a client resumes with Last-Event-ID).
-- The payload is ids only: a listener reads the row with its own rights.
CREATE FUNCTION alert_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rpm_alert_events', json_build_object(
        'id', NEW.id, 'alert_id', NEW.alert_id, 'patient_id', NEW.patient_id, 'kind', NEW.kind)::text);
    RETURN NEW;
END
$$;
REVOKE EXECUTE ON FUNCTION alert_events_notify() FROM PUBLIC;
CREATE TRIGGER alert_events_notify AFTER INSERT ON alert_events
    FOR EACH ROW EXECUTE FUNCTION alert_events_notify();

-- --- the detections already seen: a republished detection id creates nothing ----------------
CREATE TABLE alert_detections (
    detection_id  text PRIMARY KEY CHECK (length(detection_id) BETWEEN 1 AND 200),
    alert_id      uuid REFERENCES alerts (id),
    patient_id    text NOT NULL,
    rule          text NOT NULL,
    kind          text NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_detections_alert ON alert_detections (alert_id);

-- --- escalation: tiers per care team; tier 0 is who is notified when the alert opens --------
CREATE TABLE escalation_tiers (
    care_team_id  uuid NOT NULL REFERENCES care_teams (id) ON DELETE CASCADE,
    tier          smallint NOT NULL CHECK (tier BETWEEN 0 AND 9),
    after_s       integer NOT NULL CHECK (after_s >= 0),   -- not acknowledged this long after opening
    min_severity  text NOT NULL DEFAULT 'low' CHECK (min_severity IN ('info', 'low', 'medium', 'high', 'critical')),
    channels      text[] NOT NULL DEFAULT '{email}' CHECK (channels <@ ARRAY['email', 'webhook', 'inbox']::text[]),
    recipients    uuid[] NOT NULL DEFAULT '{}',           -- users; empty = every clinician of the team
    PRIMARY KEY (care_team_id, tier)
);

-- --- a clinician's notification settings ------------------------------------------------------
CREATE TABLE notification_settings (
    user_id      uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    email        text CHECK (email ~ '^[^@\s]{1,64}@[^@\s]{1,255}$'),
    quiet_start  time,   -- quiet hours in the clinician's time zone; never delay a critical alert
    quiet_end    time,
    time_zone    text NOT NULL DEFAULT 'UTC',
    CHECK ((quiet_start IS NULL) = (quiet_end IS NULL))
);

-- --- webhook destinations per care team (allow-listed; signed with HMAC-SHA256) -------------
CREATE TABLE webhooks (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    care_team_id  uuid NOT NULL REFERENCES care_teams (id) ON DELETE CASCADE,
    url           text NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2000),
    secret        text NOT NULL CHECK (length(secret) >= 32),
    enabled       boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- --- the outbox: what is to be sent, when; acknowledgement cancels what is still queued -----
CREATE TABLE notifications (
    id           bigserial PRIMARY KEY,
    alert_id     uuid NOT NULL REFERENCES alerts (id),
    tier         smallint NOT NULL DEFAULT 0,
    channel      text NOT NULL CHECK (channel IN ('email', 'webhook')),
    recipient    text NOT NULL,          -- an e-mail address or a webhooks.id
    state        text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sending', 'sent', 'cancelled', 'failed')),
    due_at       timestamptz NOT NULL,   -- quiet hours move it, never for a critical alert
    attempts     smallint NOT NULL DEFAULT 0,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz,
    UNIQUE (alert_id, tier, channel, recipient)
);
CREATE INDEX notifications_due ON notifications (due_at) WHERE state = 'queued';

-- --- break-glass: a clinician reaches a patient outside their care teams, with a reason -----
CREATE TABLE break_glass_grants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id),
    patient_id  text NOT NULL REFERENCES patients (id),
    reason      text NOT NULL CHECK (length(trim(reason)) BETWEEN 10 AND 1000),
    granted_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    CHECK (expires_at > granted_at AND expires_at <= granted_at + interval '12 hours')
);
CREATE INDEX break_glass_active ON break_glass_grants (user_id, patient_id, expires_at);
