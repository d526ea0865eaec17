"""Prometheus metrics of the Faust worker (`rpm_streams_*`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from core.progress import Progress

UP = Gauge("rpm_streams_up", "1 while the worker has joined its consumer group and holds partitions")
ASSIGNED = Gauge(
    "rpm_streams_assigned_partition", "1 for each partition of rpm.readings.v1 this worker owns", ["partition"]
)
LANE_BACKLOG = Gauge("rpm_streams_lane_backlog", "Reading records waiting for a lane (store, detect)", ["lane"])
LANE_GATHERED = Counter(
    "rpm_streams_lane_gathered", "Lane batches that waited for more records already waiting in Kafka", ["lane"]
)
RECORDS = Counter("rpm_streams_records", "Kafka reading records handled by the storage lane")
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

END_TO_END_LATENCY = Histogram(
    "rpm_streams_end_to_end_latency_seconds",
    "From a reading's device time to its batch committed in observations (a device's buffered or resent "
    "readings count with their age)",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600),
)
CONSUMER_LAG = Gauge(
    "rpm_streams_consumer_lag",
    "Records of an input topic on this worker's partitions not yet finished (Kafka high-water mark minus "
    "the offset after the newest finished record)",
    ["topic"],
)
SILENT_DEVICES = Gauge(
    "rpm_streams_silent_devices",
    "Devices of this worker's patients silent past their class's limit, by level (warn, urgent), as of the "
    "last timer pass",
    ["level"],
)

DETECTION_RECORDS = Counter(
    "rpm_streams_detection_records", "Kafka reading records run through the detectors (quarantined ones excluded)"
)
DETECTION_SKIPPED = Counter(
    "rpm_streams_detection_skipped_records",
    "Reading records the detection lane left out (quarantined; undecodable: the storage lane dead-letters those)",
    ["reason"],
)
DETECTIONS = Counter(
    "rpm_streams_detections",
    "Detections published to rpm.detections.v1, by rule, kind (raise, clear) and severity",
    ["rule", "kind", "severity"],
)
DETECTION_FAILURES = Counter(
    "rpm_streams_detection_failures", "Patients' record groups the detectors refused (dead-lettered)", ["reason"]
)
DETECTION_BATCH_SECONDS = Histogram(
    "rpm_streams_detection_batch_seconds",
    "Time to run one batch through the detectors, publish the detections and save the state",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DETECTION_LATENCY = Histogram(
    "rpm_streams_detection_latency_seconds",
    "From ingest receipt of the triggering reading to the detection acknowledged by Kafka",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 30),
)
DETECTION_DUE_SECONDS = Histogram(
    "rpm_streams_detection_due_seconds",
    "Time of one timer pass (missed measurements and doses, silent devices) over this worker's patients",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30),
)
STATES_SAVED = Counter(
    "rpm_streams_detector_states_saved", "Patients' detector states written to the table and its changelog", ["by"]
)
DETECTION_PATIENTS = Gauge("rpm_streams_detection_patients", "Patients whose detector state this worker holds")
CARE_PLANS = Counter("rpm_streams_care_plans", "Care-plan records applied to the care-plan table", ["outcome"])
DEVICE_EVENTS = Counter(
    "rpm_streams_device_events",
    "Records of rpm.device-events.v1 by kind (unknown: did not decode) and outcome (applied, stale: older "
    "than the battery stored, unknown_device, ignored: kind not used yet, invalid, failed: dead-lettered)",
    ["kind", "outcome"],
)

# Readiness from progress: rpm_streams_last_progress_timestamp_seconds, rpm_streams_input_waiting,
# rpm_streams_ready (computed at scrape time; the app sets the stall time from its settings).
PROGRESS = Progress("streams", stall_after_s=60.0)
