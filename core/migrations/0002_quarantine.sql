-- Readings accepted at ingest but quarantined (older than 7 days when received, or dated
-- before the patient's enrolment): kept for review, never fed to detection.
CREATE TABLE quarantined_readings (
    patient_id   text NOT NULL,
    device_id    text NOT NULL,
    metric       text NOT NULL,
    ts           timestamptz NOT NULL,
    value        double precision NOT NULL
                 CHECK (value <> 'NaN'::float8 AND value < 'Infinity'::float8 AND value > '-Infinity'::float8),
    received_at  timestamptz NOT NULL,
    seq          bigint NOT NULL,
    dose_id      text,
    reviewed_at  timestamptz,
    UNIQUE (patient_id, metric, ts)
);
GRANT SELECT, INSERT ON quarantined_readings TO rpm_app;
