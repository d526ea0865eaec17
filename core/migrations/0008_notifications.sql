-- The notification sender (alerts/notify/, ADR 0019) drains the outbox `notifications` as the
-- alert service's login: exactly what alerts/notify/repository.py uses. Some of it 0007
-- grants too (the lifecycle's own use); granting again changes nothing and keeps this file
-- the sender's whole list. tests/infra/test_db_grants.py holds the same list.

-- Claim due rows (FOR UPDATE needs UPDATE on a column), start an attempt with a lease,
-- settle it: sent, queued again after a backoff, failed with the reason, cancelled.
GRANT SELECT (id, alert_id, tier, channel, recipient, state, due_at, attempts) ON notifications TO rpm_alerts;
GRANT UPDATE (state, due_at, attempts, last_error, sent_at) ON notifications TO rpm_alerts;
-- The alert as the notification tells it, and the re-check at send time (acknowledged,
-- resolved, snoozed).
GRANT SELECT (id, patient_id, rule, severity, state, opened_at, snoozed_until) ON alerts TO rpm_alerts;
-- A webhook's destination and its signing secret.
GRANT SELECT (id, url, secret, enabled) ON webhooks TO rpm_alerts;
-- The alert's history: a 'notified' row per notification sent (actor NULL: the platform).
GRANT INSERT (alert_id, patient_id, at, from_state, to_state, kind, detail) ON alert_events TO rpm_alerts;
GRANT USAGE ON SEQUENCE alert_events_id_seq TO rpm_alerts;

-- A row left 'sending' past its lease (due_at) is taken up again: its own small due list.
CREATE INDEX notifications_lease ON notifications (due_at) WHERE state = 'sending';
