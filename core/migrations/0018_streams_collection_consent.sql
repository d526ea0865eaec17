-- The stream worker's timer skips patients who withdrew collection (the `collect` tier,
-- stored as scope 'remote_monitoring', ADR 0024): their readings are refused at the bridge, so
-- judging their devices silent or their measurements missed would raise alerts nobody can act
-- on. streams/detection/repository.py reads just which patients withdrew.
GRANT SELECT (patient_id, scope, withdrawn_at) ON consents TO rpm_streams;
