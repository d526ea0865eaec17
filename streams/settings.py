"""Settings of the Faust worker process."""

from __future__ import annotations

from pydantic import Field

from core.settings import DatabaseSettings, KafkaSettings


class StreamsSettings(DatabaseSettings, KafkaSettings):
    streams_app_id: str = Field("rpm-streams", description="Faust application id (consumer group, changelog prefix)")
    streams_data_dir: str = Field(".rpm/streams", description="Directory for the worker's local table state")
    streams_metrics_port: int = Field(19102, description="Port of the Prometheus metrics endpoint")
    streams_metrics_host: str = Field("127.0.0.1", description="Address of the Prometheus metrics endpoint")
    storage_batch_max: int = Field(2000, description="Most Kafka records stored in one database transaction")
    storage_batch_within_s: float = Field(0.25, description="Longest wait to fill a storage batch")
    session_timeout_s: float = Field(10.0, description="Kafka consumer session timeout: bounds failover time")
    heartbeat_interval_s: float = Field(2.0, description="Kafka consumer heartbeat interval")
