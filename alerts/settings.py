"""Settings of the alert service (`python -m alerts`): its own, the database's, Kafka's, the
notification sender's (`NotifySettings`: SMTP relay, links, retries, webhook destinations) and
the reminder loop's (`RemindersSettings`, ADR 0026) and the retention task's (`RetentionSettings`, ADR 0028)."""

from __future__ import annotations

from pydantic import Field, model_validator

from alerts.reminders.settings import LoopSettings
from alerts.retention.settings import RetentionSettings
from core.settings import DatabaseSettings, KafkaSettings


class AlertsSettings(DatabaseSettings, KafkaSettings, LoopSettings, RetentionSettings):
    alerts_metrics_port: int = Field(19103, description="Port of the alert service's Prometheus metrics endpoint")
    alerts_metrics_host: str = Field("127.0.0.1", description="Address of the alert service's metrics endpoint")
    alerts_group_id: str = Field(
        "rpm-alerts", description="Kafka consumer group of the alert service (several processes share the partitions)"
    )
    alerts_batch_max: int = Field(500, ge=1, description="Most detections fetched from Kafka at once")
    alerts_parallel: int = Field(
        4,
        ge=1,
        le=32,
        description="Detections of different patients applied at once, each in its own transaction "
        "(one patient's always in order)",
    )
    alerts_fetch_max_wait_ms: int = Field(
        100, ge=1, description="How long a Kafka fetch may wait for detections (the embedded broker holds it that long)"
    )
    alerts_timer_s: float = Field(
        1.0,
        gt=0,
        description="Seconds between rounds of the escalation and snooze timer (escalations due, snoozes ended)",
    )
    alerts_timer_batch: int = Field(100, ge=1, description="Most alerts escalated or unsnoozed per timer round")
    alerts_figures_s: float = Field(
        30.0, gt=0, description="Seconds between recomputing rpm_alerts_precision and rpm_alerts_per_patient_day"
    )
    alerts_figures_days: int = Field(
        30, ge=1, description="Window in days of the precision and alerts-per-patient-day figures"
    )
    alerts_attempts: int = Field(
        3, ge=1, description="Attempts at one detection that fails for a reason of its own before it is dead-lettered"
    )
    alerts_stall_after_s: float = Field(
        30.0,
        gt=0,
        description="Not ready when detections wait and none was committed for this many seconds "
        "(rpm_alerts_ready, make status)",
    )

    @model_validator(mode="after")
    def _pool_holds_the_senders(self) -> AlertsSettings:
        # Each delivery in flight holds a connection (its row and alert stay locked while it
        # is sent); the consumer, the timer, the figures and the reminder loop need theirs
        # beside them.
        if self.notify_concurrency + 4 > self.db_pool_max:
            raise ValueError(
                f"db_pool_max ({self.db_pool_max}) must be at least notify_concurrency + 4 "
                f"({self.notify_concurrency + 4}): each delivery in flight holds a database connection"
            )
        return self
