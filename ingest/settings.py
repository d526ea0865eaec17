"""Settings of the ingest bridge process."""

from __future__ import annotations

import socket

from pydantic import Field, SecretStr

from core.settings import DatabaseSettings, KafkaSettings, MqttSettings


class IngestSettings(DatabaseSettings, KafkaSettings, MqttSettings):
    mqtt_username: str = Field("rpm-ingest", description="MQTT user of the bridge (a service identity)")
    mqtt_password: SecretStr = Field(SecretStr("change-me"), description="Its password")
    mqtt_client_id: str = Field(
        default_factory=lambda: f"rpm-ingest-{socket.gethostname()}",
        description="Stable client id per bridge process: the persistent session is keyed by it",
    )
    mqtt_session_expiry_s: int = Field(3600, description="How long the broker keeps the session while we are away")
    mqtt_receive_maximum: int = Field(2000, description="Unacknowledged QoS 1 messages the broker may send us")
    ingest_metrics_port: int = Field(19101, description="Port of the Prometheus metrics endpoint")
    ingest_metrics_host: str = Field("127.0.0.1", description="Address of the Prometheus metrics endpoint")
    registry_refresh_s: float = Field(5.0, description="Seconds between device registry reloads")
    batch_max: int = Field(1000, description="Most MQTT messages validated and produced as one batch")
