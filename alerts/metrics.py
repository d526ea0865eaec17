"""Prometheus metrics of the alert service (`rpm_alerts_*`); readiness is core/progress.py's
`rpm_alerts_ready`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

UP = Gauge("rpm_alerts_up", "1 while the alert service is connected to Kafka and the database")
DETECTIONS = Counter(
    "rpm_alerts_detections",
    "Detections consumed, by what they did: opened, retriggered, cleared, duplicate (id seen before), "
    "stale_clear (no unresolved alert of that episode)",
    ["outcome"],
)
OPENED = Counter("rpm_alerts_opened", "Alerts opened", ["rule", "severity"])
RESOLVED = Counter(
    "rpm_alerts_resolved",
    "Alerts resolved by this service (a detection's clear: self_resolved)",
    ["rule", "disposition"],
)
ESCALATED = Counter("rpm_alerts_escalated", "Escalations to a tier", ["tier"])
UNSNOOZED = Counter("rpm_alerts_unsnoozed", "Snoozes that ended and put an alert back to open")
QUEUED = Counter("rpm_alerts_notifications_queued", "Notifications queued into the outbox", ["channel"])
DEAD_LETTERS = Counter("rpm_alerts_dead_letters", "Detections dead-lettered, by reason", ["reason"])
LAG = Gauge("rpm_alerts_consumer_lag", "Detections on Kafka not yet consumed by this process (its partitions)")
PRECISION = Gauge(
    "rpm_alerts_precision",
    "Per rule: actionable / resolved by a person, over the figures window (absent while none was resolved)",
    ["rule"],
)
RESOLVED_WINDOW = Gauge(
    "rpm_alerts_resolved_in_window",
    "Alerts resolved over the figures window, by rule and disposition",
    ["rule", "disposition"],
)
PER_PATIENT_DAY = Gauge(
    "rpm_alerts_per_patient_day", "Alerts opened per enrolled patient per day, over the figures window"
)
LATENCY = Histogram(
    "rpm_alerts_detection_latency_seconds",
    "From the detection's publication by the stream worker to its alert transaction's commit",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
