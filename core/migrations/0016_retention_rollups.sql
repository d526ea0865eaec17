-- Retention of raw observations and the hourly/daily rollups (ADR 0028).
--
-- Raw readings are part of the clinical record: how long they are kept is the programme's
-- decision (RPM_RETENTION_DAYS, alerts/retention). Dropping a chunk needs ownership of the
-- hypertable, which no process has; the alert service's retention task calls the functions
-- below instead, and they refuse to go below the floor whoever calls them: the ingest bridge
-- accepts readings up to 365 days old (core/wire.py MAX_READING_AGE), so a shorter period
-- would store a late reading and drop it at the next round. The floor here and
-- core/retention.py MIN_RETENTION_DAYS are kept equal by tests/alerts/test_retention.py.

-- Apache edition: drop the chunks of observations that end before `older_than`, and say
-- which (name, time range, the planner's row estimate). One caller at a time.
CREATE FUNCTION drop_observation_chunks(older_than timestamptz)
RETURNS TABLE (dropped_chunk text, dropped_from timestamptz, dropped_to timestamptz, approximate_rows bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    keep_at_least constant interval := interval '365 days';
    ranges jsonb;
    name text;
BEGIN
    IF older_than IS NULL OR older_than > now() - keep_at_least THEN
        RAISE EXCEPTION 'observations are kept at least %: refusing to drop chunks before %', keep_at_least, older_than
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT pg_try_advisory_xact_lock(hashtext('rpm.drop_observation_chunks')) THEN
        RETURN;  -- another process is dropping them now
    END IF;
    SELECT coalesce(jsonb_object_agg(
               format('%I.%I', c.chunk_schema, c.chunk_name),
               jsonb_build_array(c.range_start, c.range_end,
                                 nullif(greatest(k.reltuples, -1), -1)::bigint)), '{}'::jsonb)
      INTO ranges
      FROM timescaledb_information.chunks AS c
      JOIN pg_class AS k ON k.oid = format('%I.%I', c.chunk_schema, c.chunk_name)::regclass
     WHERE c.hypertable_schema = 'public' AND c.hypertable_name = 'observations';
    FOR name IN SELECT d FROM drop_chunks('public.observations', older_than => older_than) AS d LOOP
        dropped_chunk := name;
        dropped_from := (ranges -> name ->> 0)::timestamptz;
        dropped_to := (ranges -> name ->> 1)::timestamptz;
        approximate_rows := (ranges -> name ->> 2)::bigint;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Editions with policy jobs: TimescaleDB's own retention job keeps `keep` (changed only when
-- it differs); returns the job id.
CREATE FUNCTION set_observation_retention_policy(keep interval) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    keep_at_least constant interval := interval '365 days';
    job integer;
    current_keep interval;
BEGIN
    IF keep IS NULL OR keep < keep_at_least THEN
        RAISE EXCEPTION 'observations are kept at least %: refusing a retention policy of %', keep_at_least, keep
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT j.job_id, (j.config ->> 'drop_after')::interval INTO job, current_keep
      FROM timescaledb_information.jobs AS j
     WHERE j.proc_name = 'policy_retention' AND j.hypertable_schema = 'public'
       AND j.hypertable_name = 'observations';
    IF job IS NOT NULL AND current_keep = keep THEN
        RETURN job;
    END IF;
    PERFORM remove_retention_policy('public.observations', if_exists => true);
    RETURN add_retention_policy('public.observations', drop_after => keep);
END
$$;

REVOKE EXECUTE ON FUNCTION drop_observation_chunks(timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION set_observation_retention_policy(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION drop_observation_chunks(timestamptz) TO rpm_alerts;
GRANT EXECUTE ON FUNCTION set_observation_retention_policy(interval) TO rpm_alerts;

-- Rollups: plain views of 0001 on the Apache edition (computed at read time over what is
-- kept); continuous aggregates of the same name and columns where the edition has them
-- (real-time: materialised buckets plus the newest readings). Their refresh window reaches
-- back as far as a late reading may (365 days), so a device's offline backlog is counted.
DO $$
BEGIN
    IF coalesce(current_setting('timescaledb.license', true), 'apache') <> 'apache' THEN
        DROP VIEW observations_hourly;
        DROP VIEW observations_daily;
        EXECUTE $sql$
            CREATE MATERIALIZED VIEW observations_hourly
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT patient_id, metric, time_bucket('1 hour', ts) AS bucket,
                   count(*) AS n, avg(value) AS mean, min(value) AS min, max(value) AS max
            FROM observations GROUP BY patient_id, metric, bucket
            WITH NO DATA
        $sql$;
        EXECUTE $sql$
            CREATE MATERIALIZED VIEW observations_daily
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT patient_id, metric, time_bucket('1 day', ts) AS bucket,
                   count(*) AS n, avg(value) AS mean, min(value) AS min, max(value) AS max
            FROM observations GROUP BY patient_id, metric, bucket
            WITH NO DATA
        $sql$;
        PERFORM add_continuous_aggregate_policy('observations_hourly', start_offset => interval '366 days',
                                                end_offset => interval '1 hour', schedule_interval => interval '30 minutes');
        PERFORM add_continuous_aggregate_policy('observations_daily', start_offset => interval '366 days',
                                                end_offset => interval '1 day', schedule_interval => interval '1 hour');
        GRANT SELECT ON observations_hourly, observations_daily TO rpm_reporting;
    END IF;
END
$$;

-- The API reads rollups too (per-patient trends, behind its own access checks); the views
-- run with their owner's rights, so no grant on the hypertable is needed.
GRANT SELECT ON observations_hourly, observations_daily TO rpm_api;
