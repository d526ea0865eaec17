-- What the Grafana dashboards read beyond 0005's reporting grants (issue 14 item 2; infra/grafana,
-- ADR on dashboards as code). Still no names, no reading values, no free text, no whole care
-- plans: the device fleet needs which device sent which sequence number and its battery; the
-- escalation panel the notification tiers (not their recipients); engagement the reminders'
-- outcomes and which audited requests were patients'; the patient drill-down the care plan's
-- alerting limits, through a view of just those numbers. tests/infra/test_db_grants.py holds
-- the same grants.

GRANT SELECT (device_id, seq) ON observations TO rpm_reporting;
GRANT SELECT (battery, battery_at) ON devices TO rpm_reporting;
GRANT SELECT (alert_id, tier, channel, state, created_at, sent_at) ON notifications TO rpm_reporting;
GRANT SELECT (kind, metric, channel, follow_up, scheduled_at, state, outcome) ON reminders TO rpm_reporting;
GRANT SELECT (actor_role) ON audit_events TO rpm_reporting;

-- The limits that raise alerts, one row per enabled limit of a stored plan (core/careplan.py
-- Limit); patients without a stored plan run on the defaults, which the view does not show.
CREATE VIEW care_plan_limits AS
SELECT c.patient_id, l->>'rule' AS rule, l->>'metric' AS metric, l->>'direction' AS direction,
       (l->>'raise_at')::float8 AS raise_at, (l->>'clear_at')::float8 AS clear_at
FROM care_plans c, jsonb_array_elements(c.plan->'limits') AS l
WHERE coalesce((l->>'enabled')::boolean, true);
GRANT SELECT ON care_plan_limits TO rpm_reporting;
