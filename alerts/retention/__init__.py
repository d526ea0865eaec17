"""Retention of raw observations (ADR 0028): a supervised task of the alert service drops the
chunks of `observations` older than `RPM_RETENTION_DAYS` (Apache edition: `drop_chunks`
through migration 0016's function) or keeps TimescaleDB's own retention policy at that period
(editions with policy jobs)."""

from alerts.retention.settings import RetentionSettings
from alerts.retention.task import RetentionRound, retention_round, run_retention

__all__ = ["RetentionRound", "RetentionSettings", "retention_round", "run_retention"]
