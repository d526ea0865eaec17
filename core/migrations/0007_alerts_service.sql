-- The alert service's database rights (`python -m alerts`, ADR 0016 and ADR 0018): exactly
-- what alerts/repository.py uses. tests/infra/test_db_grants.py holds the same list.

-- Detections already turned into alerts: a republished detection id creates nothing.
GRANT SELECT (detection_id) ON alert_detections TO rpm_alerts;
GRANT INSERT (detection_id, alert_id, patient_id, rule, kind) ON alert_detections TO rpm_alerts;

-- The open alert of a (patient, rule), the escalation and snooze due lists, and the figures
-- (precision per rule, alerts per patient-day). Opening an alert, re-triggering, clearing,
-- escalating and ending a snooze; never who acknowledged, resolved or was assigned (the API's).
GRANT SELECT (id, patient_id, rule, severity, state, title, evidence, opened_at, updated_at, resolved_at,
              disposition, detection_ids, repeat_count, last_triggered_at, acknowledged_at, acknowledged_by,
              assigned_to, snoozed_until, resolved_by, resolution_note, escalation_tier, next_escalation_at)
    ON alerts TO rpm_alerts;
GRANT INSERT (id, patient_id, rule, severity, state, title, evidence, opened_at, updated_at, detection_ids,
              repeat_count, last_triggered_at, escalation_tier, next_escalation_at)
    ON alerts TO rpm_alerts;
GRANT UPDATE (severity, state, title, evidence, updated_at, resolved_at, disposition, detection_ids,
              repeat_count, last_triggered_at, snoozed_until, escalation_tier, next_escalation_at)
    ON alerts TO rpm_alerts;

-- The history: every transition the service makes (actor NULL = the platform).
GRANT INSERT (alert_id, at, actor_id, from_state, to_state, note, patient_id, kind, detail) ON alert_events TO rpm_alerts;
GRANT USAGE ON SEQUENCE alert_events_id_seq TO rpm_alerts;

-- Who is notified: the patient's care teams, their tiers, members and their addresses, webhooks
-- (the id only: the secret is the sender's business).
GRANT SELECT (care_team_id, patient_id) ON care_team_patients TO rpm_alerts;
GRANT SELECT (care_team_id, user_id) ON care_team_members TO rpm_alerts;
GRANT SELECT (id, role, disabled) ON users TO rpm_alerts;
GRANT SELECT (care_team_id, tier, after_s, min_severity, channels, recipients) ON escalation_tiers TO rpm_alerts;
GRANT SELECT (user_id, email, quiet_start, quiet_end, time_zone) ON notification_settings TO rpm_alerts;
GRANT SELECT (id, care_team_id, enabled) ON webhooks TO rpm_alerts;

-- The outbox: queue a tier's notifications (a repeat is absorbed by its unique key) and cancel
-- what is still queued when a detection's clear resolves the alert.
GRANT INSERT (alert_id, tier, channel, recipient, due_at) ON notifications TO rpm_alerts;
GRANT USAGE ON SEQUENCE notifications_id_seq TO rpm_alerts;
GRANT SELECT (alert_id, state) ON notifications TO rpm_alerts;
GRANT UPDATE (state) ON notifications TO rpm_alerts;

-- Alerts per patient-day: how many patients are enrolled.
GRANT SELECT (id) ON patients TO rpm_alerts;
