-- The clinician's alerts in the API (api/alerts, ADR 0020): what its repository reads and
-- writes, column by column, and the inbox's index. The alert service's own grants are in
-- 0007/0008; the API writes only what a person's move changes (never severity, evidence,
-- escalation tier or repeat count) and cancels queued notifications (CANCEL_QUEUED_SQL).

-- The inbox, one alert, the precision figures; the columns of core.alert_lifecycle.Alert.
GRANT SELECT (id, patient_id, rule, severity, state, title, evidence, opened_at, updated_at, resolved_at,
              disposition, detection_ids, repeat_count, last_triggered_at, acknowledged_at, acknowledged_by,
              assigned_to, snoozed_until, resolved_by, resolution_note, escalation_tier, next_escalation_at)
    ON alerts TO rpm_api;
-- acknowledge, assign, snooze, resolve, note.
GRANT UPDATE (state, updated_at, acknowledged_at, acknowledged_by, assigned_to, snoozed_until, resolved_at,
              resolved_by, disposition, resolution_note, next_escalation_at)
    ON alerts TO rpm_api;
-- The history: read (an alert's history, the stream and its replay) and append (who, when, why).
GRANT SELECT (id, alert_id, patient_id, kind, at, actor_id, from_state, to_state, note, detail) ON alert_events TO rpm_api;
GRANT INSERT (alert_id, at, actor_id, from_state, to_state, note, patient_id, kind, detail) ON alert_events TO rpm_api;
GRANT USAGE ON SEQUENCE alert_events_id_seq TO rpm_api;
-- Acknowledging (snoozing, resolving) cancels what is still queued on every channel.
GRANT SELECT (alert_id, state) ON notifications TO rpm_api;
GRANT UPDATE (state) ON notifications TO rpm_api;

-- The inbox: a care team's unresolved alerts, most severe first, then oldest first. The
-- severity expression is api/alerts/repository.py's SEVERITY_RANK, character for character.
CREATE INDEX alerts_inbox ON alerts (
    patient_id,
    (CASE severity WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 WHEN 'low' THEN 1 ELSE 0 END) DESC,
    opened_at,
    id
) WHERE state <> 'resolved';
