-- The patients API and the devices' battery (issue 11; ADR 0023). Exactly what api/patients
-- and the stream worker's device-events lane use; tests/infra/test_db_grants.py holds the same list.

-- api/patients/repository.py: a clinician's lists and summaries name the patient.
GRANT SELECT (display_name) ON patients TO rpm_api;

-- The battery level a device last reported (rpm.device-events.v1, kind "battery"), kept on the
-- device: the stream worker writes it, the patient summary shows it with its time.
ALTER TABLE devices
    ADD COLUMN IF NOT EXISTS battery     real CHECK (battery >= 0 AND battery <= 1),
    ADD COLUMN IF NOT EXISTS battery_at  timestamptz;
GRANT SELECT (battery, battery_at) ON devices TO rpm_api;
-- streams/devices: only a newer report replaces the stored one (WHERE battery_at < new).
GRANT SELECT (battery_at) ON devices TO rpm_streams;
GRANT UPDATE (battery, battery_at) ON devices TO rpm_streams;
