-- The API's care plans, devices, audit query and break-glass (issue 11; ADR 0021): exactly
-- what api/careplans, api/devices, api/admin and api/access use, as the API's login.
-- tests/infra/test_db_grants.py holds the same list.

-- api/careplans/repository.py: read a plan, store the next version (an upsert whose WHERE
-- compares the version: the optimistic-concurrency check and the row lock in one statement).
GRANT SELECT (patient_id, version, plan, updated_at, updated_by) ON care_plans TO rpm_api;
GRANT INSERT (patient_id, version, plan, updated_at, updated_by) ON care_plans TO rpm_api;
GRANT UPDATE (version, plan, updated_at, updated_by) ON care_plans TO rpm_api;
-- api/careplans/repository.py: the what-if replays a patient's stored readings (dose_id
-- for medication events; the other columns 0005 grants for the observations read).
GRANT SELECT (dose_id) ON observations TO rpm_api;

-- api/devices/repository.py and core/devices.py (provision, revoke, bind, list).
GRANT SELECT (id, device_class, model, created_at, revoked_at) ON devices TO rpm_api;
GRANT INSERT (id, device_class, model) ON devices TO rpm_api;
GRANT UPDATE (device_class, revoked_at) ON devices TO rpm_api;
GRANT SELECT (id, device_id, patient_id, valid_from, valid_to) ON device_bindings TO rpm_api;
GRANT INSERT (device_id, patient_id, valid_from, valid_to) ON device_bindings TO rpm_api;
GRANT UPDATE (valid_to) ON device_bindings TO rpm_api;
GRANT USAGE ON SEQUENCE device_bindings_id_seq TO rpm_api;

-- api/admin/repository.py: admins query the audit trail (still no UPDATE or DELETE).
GRANT SELECT (id, at, actor_id, actor_role, patient_id, action, resource, outcome, detail) ON audit_events TO rpm_api;

-- api/access/repository.py: break-glass grants (0006): open one, find the active ones.
GRANT SELECT (id, user_id, patient_id, reason, granted_at, expires_at) ON break_glass_grants TO rpm_api;
GRANT INSERT (user_id, patient_id, reason, expires_at) ON break_glass_grants TO rpm_api;

-- The audit query filters by actor and time: an index for the admin's newest-first pages.
CREATE INDEX IF NOT EXISTS audit_events_at ON audit_events (at DESC, id DESC);
