-- Reminders of the care-plan schedules and the patient's own preferences (issue 12, ADR 0026).
-- The alert service (alerts/reminders) plans, sends, cancels and settles reminders; the API
-- (api/reminders) shows a patient their reminders and keeps their profile.
-- tests/infra/test_db_grants.py holds the same grants.

-- --- what the patient chose: contact e-mail, channels, quiet hours, time zone ---------------------
CREATE TABLE patient_preferences (
    patient_id   text PRIMARY KEY REFERENCES patients (id) ON DELETE CASCADE,
    email        text CHECK (email ~ '^[^@\s]{1,64}@[^@\s]{1,255}$'),
    channels     text[] NOT NULL DEFAULT '{in_app}'
                 CHECK (channels <@ ARRAY['in_app', 'email']::text[]),
    quiet_start  time,   -- local times in time_zone; quiet from start up to end (may wrap midnight)
    quiet_end    time,
    time_zone    text,   -- IANA name; NULL = the care plan's time zone
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((quiet_start IS NULL) = (quiet_end IS NULL)),
    CHECK (quiet_start IS NULL OR quiet_start <> quiet_end)
);

-- --- every reminder, one row per (slot, channel, first or follow-up), and how it ended ------------
CREATE TABLE reminders (
    id            bigserial PRIMARY KEY,
    patient_id    text NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    schedule_key  text NOT NULL,          -- "measurement:<metric>" or "dose:<dose_id>" (core/detectors/adherence.py)
    slot_key      text NOT NULL,          -- local "YYYY-MM-DDTHH:MM", or "YYYY-MM-DD" for a count per day
    kind          text NOT NULL CHECK (kind IN ('measurement', 'dose')),
    metric        text NOT NULL,
    dose_id       text,
    channel       text NOT NULL CHECK (channel IN ('in_app', 'email')),
    follow_up     boolean NOT NULL DEFAULT false,
    scheduled_at  timestamptz NOT NULL,   -- the slot's time (UTC)
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL,
    due_at        timestamptz NOT NULL,   -- when it is next looked at (moved by quiet hours, retries)
    state         text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent', 'cancelled', 'skipped')),
    -- queued: NULL; sent: 'sent', then 'reading_after' or 'no_reading' once the window closed;
    -- cancelled: 'cancelled_reading_arrived'; skipped: 'skipped_quiet_hours', 'skipped_window_closed',
    -- 'skipped_channel_off', 'skipped_no_address', 'skipped_plan_changed', 'skipped_send_failed'
    outcome       text,
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz,
    settled_at    timestamptz,
    seen_at       timestamptz,            -- the patient marked an in-app reminder as seen
    CHECK (window_end >= window_start),
    CHECK ((state = 'queued') = (outcome IS NULL)),
    UNIQUE (patient_id, schedule_key, slot_key, channel, follow_up)
);
CREATE INDEX reminders_queued_due ON reminders (due_at) WHERE state = 'queued';
CREATE INDEX reminders_sent_open ON reminders (window_end) WHERE state = 'sent' AND outcome = 'sent';
CREATE INDEX reminders_patient ON reminders (patient_id, scheduled_at DESC);

-- --- the alert service (alerts/reminders/repository.py) ------------------------------------------
-- which plans have schedules, and whether the reading or dose of a slot came
GRANT SELECT (patient_id, version, plan) ON care_plans TO rpm_alerts;
GRANT SELECT (patient_id, metric, ts, dose_id) ON observations TO rpm_alerts;
GRANT SELECT (patient_id, email, channels, quiet_start, quiet_end, time_zone) ON patient_preferences TO rpm_alerts;
GRANT SELECT (id, patient_id, schedule_key, slot_key, kind, metric, dose_id, channel, follow_up, scheduled_at,
              window_start, window_end, due_at, state, outcome, attempts, sent_at)
    ON reminders TO rpm_alerts;
GRANT INSERT (patient_id, schedule_key, slot_key, kind, metric, dose_id, channel, follow_up, scheduled_at,
              window_start, window_end, due_at)
    ON reminders TO rpm_alerts;
GRANT UPDATE (due_at, state, outcome, attempts, last_error, sent_at, settled_at) ON reminders TO rpm_alerts;
GRANT USAGE ON SEQUENCE reminders_id_seq TO rpm_alerts;

-- --- the API (api/reminders/repository.py): a patient's own reminders and profile ----------------
GRANT SELECT (id, patient_id, schedule_key, slot_key, kind, metric, dose_id, channel, follow_up, scheduled_at,
              window_start, window_end, due_at, state, outcome, sent_at, settled_at, seen_at)
    ON reminders TO rpm_api;
GRANT UPDATE (seen_at) ON reminders TO rpm_api;
GRANT SELECT (patient_id, email, channels, quiet_start, quiet_end, time_zone, updated_at)
    ON patient_preferences TO rpm_api;
GRANT INSERT (patient_id, email, channels, quiet_start, quiet_end, time_zone, updated_at)
    ON patient_preferences TO rpm_api;
GRANT UPDATE (email, channels, quiet_start, quiet_end, time_zone, updated_at) ON patient_preferences TO rpm_api;
