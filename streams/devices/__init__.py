"""Device events in the worker: `rpm.device-events.v1` (written by the bridge) applied to the
`devices` table; for now the battery level a device last reported."""
