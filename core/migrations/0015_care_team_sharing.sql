-- Sharing with the care team is enforced (issue 12 item 4; ADR 0024). One home for the rule:
-- `care_team_patients_shared` is `care_team_patients` without the patients who withdrew the
-- `share_care_team` tier (they have grants of that tier and none is open). A patient who never
-- recorded a choice on the tier (enrolled before tiers existed) shares: enrolment in the
-- monitoring programme agreed to it. Every query that decides "the patients of my care team"
-- (access, my patients, the inbox and its figures, devices, the alert stream, notifications
-- and escalation) reads the view; the processes lose SELECT on the table itself, so a query
-- that forgets the rule fails instead of leaking. tests/infra/test_db_grants.py holds the same
-- grants.

CREATE VIEW care_team_patients_shared AS
SELECT t.care_team_id, t.patient_id
FROM care_team_patients AS t
WHERE NOT EXISTS (
        SELECT 1 FROM consents AS c
        WHERE c.patient_id = t.patient_id AND c.scope = 'share_care_team'
    )
    OR EXISTS (
        SELECT 1 FROM consents AS c
        WHERE c.patient_id = t.patient_id AND c.scope = 'share_care_team' AND c.withdrawn_at IS NULL
    );

-- The view reads the tables with its owner's rights: the roles need SELECT on it only.
GRANT SELECT ON care_team_patients_shared TO rpm_api, rpm_alerts;
REVOKE SELECT (care_team_id, patient_id) ON care_team_patients FROM rpm_api, rpm_alerts;

-- Open alert streams (api/alerts/stream.py) re-read whose events they may send as soon as a
-- patient gives or withdraws sharing, not at their next periodic refresh: the listener of
-- `rpm_alert_events` takes this payload (no alert event id) as "scopes changed".
CREATE FUNCTION consents_sharing_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rpm_alert_events', '{"scopes_changed":true}');
    RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION consents_sharing_changed() FROM PUBLIC;
CREATE TRIGGER consents_sharing_changed AFTER INSERT OR UPDATE ON consents
    FOR EACH ROW WHEN (NEW.scope = 'share_care_team') EXECUTE FUNCTION consents_sharing_changed();
