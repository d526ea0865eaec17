"""Settings of the ingest bridge process."""

from __future__ import annotations

import socket
import ssl

from pydantic import Field, SecretStr

from core.clients.mqtt5 import SessionOptions
from core.settings import DatabaseSettings, KafkaSettings, MqttSettings
from core.wire import INGEST_SHARE_GROUP, TOPIC_PREFIX


class IngestSettings(DatabaseSettings, KafkaSettings, MqttSettings):
    mqtt_username: str = Field("rpm-ingest", description="MQTT user of the bridge (a service identity)")
    mqtt_password: SecretStr = Field(SecretStr("change-me"), description="Its password")
    mqtt_client_id: str = Field(
        default_factory=lambda: f"rpm-ingest-{socket.gethostname()}",
        description="Stable client id per bridge process: the persistent session is keyed by it",
    )
    mqtt_session_expiry_s: int = Field(3600, description="How long the broker keeps the session while we are away")
    mqtt_receive_maximum: int = Field(
        2000, ge=1, le=65535, description="Unacknowledged QoS 1 messages the broker may send us"
    )
    mqtt_keepalive_s: int = Field(
        30, ge=0, le=65535, description="MQTT keep alive in seconds; a ping goes out when the link is quiet"
    )
    mqtt_leave_on_stop: bool = Field(
        False,
        description="On SIGTERM, leave the shared subscription for good: unsubscribe, forward what the session "
        "holds, end the session. For removing a bridge while others keep running; a bridge that restarts keeps "
        "its session (messages published meanwhile wait in it)",
    )
    ingest_metrics_port: int = Field(19101, description="Port of the Prometheus metrics endpoint")
    ingest_metrics_host: str = Field("127.0.0.1", description="Address of the Prometheus metrics endpoint")
    registry_refresh_s: float = Field(5.0, description="Seconds between device registry reloads")
    batch_max: int = Field(1000, ge=1, description="Most MQTT messages validated and produced as one batch")
    inbox_max: int = Field(
        2000,
        ge=1,
        description="Messages read from the broker and not yet batched; at this many the bridge stops reading "
        "until half of them were taken (bounds memory and ack latency when Kafka is slow)",
    )
    ingest_stall_after_s: float = Field(
        30.0,
        gt=0,
        description="Not ready when messages wait and none was acknowledged for this many seconds "
        "(rpm_ingest_ready, make status)",
    )

    def session_options(self) -> SessionOptions:
        """The bridge's MQTT session: persistent, on the shared subscription of device topics."""
        share = f"$share/{INGEST_SHARE_GROUP}/{TOPIC_PREFIX}"
        return SessionOptions(
            host=self.mqtt_host,
            port=self.mqtt_port,
            client_id=self.mqtt_client_id,
            username=self.mqtt_username,
            password=self.mqtt_password.get_secret_value(),
            subscriptions=((f"{share}/+/telemetry", 1), (f"{share}/+/status", 1)),
            keepalive=self.mqtt_keepalive_s,
            session_expiry=self.mqtt_session_expiry_s,
            receive_maximum=self.mqtt_receive_maximum,
            clean_start=False,
            ssl=ssl.create_default_context(cafile=self.mqtt_ca_file) if self.mqtt_tls else None,
        )
