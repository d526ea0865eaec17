"""Settings of the Faust worker process."""

from __future__ import annotations

from typing import Final

from pydantic import Field, field_validator, model_validator

from core.settings import DatabaseSettings, KafkaSettings
from streams.faults import POINTS

ROLES: Final = ("store", "detect")


class StreamsSettings(DatabaseSettings, KafkaSettings):
    streams_app_id: str = Field("rpm-streams", description="Faust application id (consumer group, changelog prefix)")
    streams_roles: str = Field(
        "store,detect",
        description="What this worker runs, comma separated: store (storage lane), detect (detection lane, "
        "care-plan agent and timer). Workers with different roles need different RPM_STREAMS_APP_ID values, "
        "so that each role has its own consumer group and never waits for the other",
    )
    streams_data_dir: str = Field(".rpm/streams", description="Directory for the worker's local table state")
    streams_table_store: str = Field(
        "memory://",
        description="Faust table store; memory:// rebuilds tables from their changelog topics at start",
    )
    streams_metrics_port: int = Field(19102, description="Port of the Prometheus metrics endpoint")
    streams_metrics_host: str = Field("127.0.0.1", description="Address of the Prometheus metrics endpoint")
    readings_batch_max: int = Field(2000, description="Most reading records taken from Kafka in one batch")
    readings_batch_within_s: float = Field(
        0.1, description="Longest wait to fill a batch of reading records (adds to storage and detection latency)"
    )
    lane_backlog_records: int = Field(
        100_000,
        description="Records the storage or detection lane may fall behind before the worker stops taking "
        "more (detection goes on this long while storage waits out a database outage)",
    )
    lane_gather_above_records: int = Field(
        1000,
        description="When at least this many reading records wait in Kafka beyond those taken, a free lane "
        "waits for a full batch (fewer, larger batches: per-patient work done once for several records)",
    )
    lane_gather_max_s: float = Field(0.5, description="Longest such wait for a full batch (0 turns gathering off)")
    storage_batch_max: int = Field(
        5000, description="Most Kafka records stored in one database transaction (queued batches are merged)"
    )
    detection_batch_max: int = Field(
        5000, description="Most Kafka records run through the detectors at once (queued batches are merged)"
    )
    detection_due_interval_s: float = Field(
        30.0, description="How often the timer looks for missed measurements and doses and silent devices"
    )
    detection_due_guard_s: float = Field(
        120.0,
        description="Skip the timer for a partition whose detection lane is this far behind (catching up "
        "after a restart), so that readings still in Kafka do not count as missing",
    )
    detection_send_retries: int = Field(
        5, description="Attempts to publish a detection or save detector state before giving up on the batch"
    )
    device_class_ttl_s: float = Field(600.0, description="How long a device's class is cached by the worker")
    producer_linger_ms: int = Field(
        5, description="How long the worker's Kafka producer waits to fill a request (throughput vs latency)"
    )
    consumer_fetch_max_wait_ms: int = Field(
        100,
        description="Longest time a Kafka fetch may wait for data (Faust's own 1,500 ms adds that much "
        "latency on brokers that hold fetches, such as the embedded one)",
    )
    session_timeout_s: float = Field(
        6.0,
        description="Kafka consumer session timeout: a killed worker's partitions move after about this plus "
        "the rebalance (measured in docs/benchmarks/streams.md); too short and a busy worker is thrown out",
    )
    heartbeat_interval_s: float = Field(
        1.0, description="Kafka consumer heartbeat interval (under a third of the above)"
    )
    streams_stall_after_s: float = Field(
        60.0,
        gt=0,
        description="The worker reports not ready (rpm_streams_ready 0) when reading or care-plan records "
        "assigned to it wait and it has finished none for this long (stuck, or storage waiting out a "
        "database outage)",
    )
    streams_fault_inject: str = Field(
        "",
        description="Development and test only (refused in production): make one part of the worker raise "
        "once, to test that the process then exits non-zero naming it; one of " + ", ".join(POINTS),
    )

    @field_validator("streams_roles")
    @classmethod
    def _known_roles(cls, value: str) -> str:
        roles = {r.strip() for r in value.split(",") if r.strip()}
        if not roles or not roles <= set(ROLES):
            raise ValueError(f"streams_roles must name some of {', '.join(ROLES)}; got {value!r}")
        return value

    @model_validator(mode="after")
    def _no_faults_in_production(self) -> StreamsSettings:
        if self.streams_fault_inject:
            if self.environment == "production":
                raise ValueError("RPM_STREAMS_FAULT_INJECT is refused in production")
            if self.streams_fault_inject not in POINTS:
                raise ValueError(f"RPM_STREAMS_FAULT_INJECT must be one of {', '.join(POINTS)}")
        return self

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(r.strip() for r in self.streams_roles.split(",") if r.strip())
