-- Consent in tiers (issue 12; ADR 0024): collect monitoring data, share with my care team,
-- use for quality improvement and research. Each grant names the document version the patient
-- agreed to; a withdrawal closes the current row, a new grant is a new row, and no row is
-- ever changed otherwise (history kept). tests/infra/test_db_grants.py holds the same grants.

-- The `collect` tier keeps its stored name 'remote_monitoring': the bridge's registry
-- (ingest/registry.py), check-ins, the simulator and the demo already read and write it, so
-- collection keeps working through this migration with no change to the ingest role.
ALTER TABLE consents
    ADD CONSTRAINT consents_scope_known CHECK (scope IN ('remote_monitoring', 'share_care_team', 'research'));

-- NULL for grants recorded before versioned documents (at enrolment, outside the portal).
ALTER TABLE consents
    ADD COLUMN IF NOT EXISTS document_version text
        CHECK (document_version IS NULL OR document_version ~ '^[a-z_]+-v[0-9]+$');

-- History kept: a row may only be closed once (withdrawn_at from NULL to a time); nothing else
-- of a grant changes, whoever has UPDATE on the table.
CREATE FUNCTION consents_history_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.withdrawn_at IS NOT NULL
       OR NEW.withdrawn_at IS NULL
       OR (NEW.id, NEW.patient_id, NEW.scope, NEW.granted_at, NEW.recorded_by, NEW.document_version)
          IS DISTINCT FROM (OLD.id, OLD.patient_id, OLD.scope, OLD.granted_at, OLD.recorded_by, OLD.document_version)
    THEN
        RAISE EXCEPTION 'consents keep their history: only an open grant may be withdrawn, once';
    END IF;
    RETURN NEW;
END
$$;
REVOKE EXECUTE ON FUNCTION consents_history_kept() FROM PUBLIC;
CREATE TRIGGER consents_history_kept BEFORE UPDATE ON consents
    FOR EACH ROW EXECUTE FUNCTION consents_history_kept();

-- api/consents/repository.py: the patient's grants and their history, a new grant, a withdrawal.
GRANT SELECT (id, document_version, recorded_by) ON consents TO rpm_api;
GRANT INSERT (patient_id, scope, granted_at, document_version, recorded_by) ON consents TO rpm_api;
GRANT UPDATE (withdrawn_at) ON consents TO rpm_api;
GRANT USAGE ON SEQUENCE consents_id_seq TO rpm_api;
