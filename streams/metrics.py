"""Prometheus metrics of the Faust worker (`rpm_streams_*`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

UP = Gauge("rpm_streams_up", "1 while the worker has joined its consumer group and holds partitions")
RECORDS = Counter("rpm_streams_records", "Kafka reading records consumed by the storage agent")
STORED = Counter("rpm_streams_stored_readings", "Readings newly inserted into observations")
REPLAYED = Counter("rpm_streams_replayed_readings", "Readings already stored (absorbed replays and duplicates)")
DEAD_LETTERS = Counter("rpm_streams_dead_letters", "Records or rows sent to the dead-letter topic", ["reason"])
BATCH_SECONDS = Histogram(
    "rpm_streams_storage_batch_seconds",
    "Time to store one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
STORAGE_LAG = Histogram(
    "rpm_streams_storage_lag_seconds",
    "From ingest receipt to committed storage",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
