"""Prometheus metrics of the bridge (`rpm_ingest_*`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

UP = Gauge("rpm_ingest_up", "1 while the bridge is connected to MQTT and Kafka")
RECEIVED = Counter("rpm_ingest_received_messages", "MQTT messages received")
FORWARDED = Counter("rpm_ingest_forwarded_readings", "Readings forwarded to Kafka")
QUARANTINED = Counter(
    "rpm_ingest_quarantined_readings", "Readings forwarded but quarantined (too old or before enrolment)"
)
REJECTED = Counter("rpm_ingest_rejected", "Dead letters by reason", ["reason"])
DUPLICATES = Counter("rpm_ingest_duplicate_messages", "Messages absorbed as duplicates of an earlier (device, seq)")
DEVICE_EVENTS = Counter("rpm_ingest_device_events", "Device events produced", ["kind"])
RESEND_REQUESTS = Counter("rpm_ingest_resend_requests", "Resend-from-seq commands sent to devices")
KAFKA_RETRIES = Counter("rpm_ingest_kafka_retries", "Batches re-produced after a Kafka error")
ACK_LATENCY = Histogram(
    "rpm_ingest_ack_latency_seconds",
    "From MQTT receipt to MQTT acknowledgement (after Kafka acknowledged)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
