"""Every platform process's /metrics, scraped from the running test stack: `promtool check
metrics` (Debian's prometheus package) passes, the metric families the operations guide lists
are there, and no label names a patient, device, alert or user. The stack's own Prometheus
scrapes every process: its HTTP API reports each target up and answers PromQL over our metrics."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.wire import READINGS
from infra.prometheus import JOBS, Prometheus, render_config
from infra.stack import Stack
from tests.helpers import Device, count_rows, create_patient, provision, reading, wait_for

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package 'prometheus'; infra/setup.sh installs it)"
)

# The families each process must expose (issue 14's list; docs/operations.md, "Metrics").
EXPECTED = {
    "ingest": {
        "rpm_ingest_received_messages",  # MQTT messages in
        "rpm_ingest_rejected",  # dead letters by reason
        "rpm_ingest_ack_latency_seconds",
        "rpm_ingest_last_progress_timestamp_seconds",
        "process_start_time_seconds",  # restarts: changes() of it
    },
    "streams": {
        "rpm_streams_consumer_lag",
        "rpm_streams_storage_batch_seconds",  # batch write latency
        "rpm_streams_end_to_end_latency_seconds",  # device time -> row committed
        "rpm_streams_detections",  # by rule, kind and severity
        "rpm_streams_silent_devices",
        "rpm_streams_last_progress_timestamp_seconds",
        "process_start_time_seconds",
    },
    "alerts": {
        "rpm_alerts_opened",  # alerts by rule and severity
        "rpm_alerts_consumer_lag",
        "rpm_alerts_detection_latency_seconds",
        "rpm_alerts_last_progress_timestamp_seconds",
        "process_start_time_seconds",
    },
    "api": {
        "rpm_api_requests",
        "rpm_api_request_duration_seconds",
        "rpm_api_sse_clients",
        "rpm_api_alert_time_to_acknowledge_seconds",
        "process_start_time_seconds",
    },
}
# Labels that would make one series per person or thing (and carry identities into Prometheus).
IDENTIFYING = {"patient_id", "patient", "device_id", "device", "alert_id", "user_id", "user", "username", "id"}


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30, check=False
    )


@needs_promtool
def test_promtool_refuses_what_breaks_the_conventions() -> None:
    """The check below is live: a counter without `_total` fails it."""
    result = promtool_check("# HELP rpm_bad_things Things\n# TYPE rpm_bad_things counter\nrpm_bad_things 1\n")
    assert result.returncode != 0
    assert "_total" in result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize("job", JOBS)
def test_every_process_metrics_pass_promtool(prometheus: Prometheus, platform: Stack, job: str) -> None:
    port = platform.metrics_ports()[job]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text

    result = promtool_check(text)

    assert result.returncode == 0, result.stdout + result.stderr
    assert not (result.stdout + result.stderr).strip(), result.stdout + result.stderr
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert EXPECTED[job] <= families.keys(), f"missing: {sorted(EXPECTED[job] - families.keys())}"
    # Ours carry the rpm_ prefix; the rest is prometheus_client's own process and runtime metrics.
    ours = [f for name, f in families.items() if not name.startswith(("python_", "process_"))]
    assert all(f.name.startswith("rpm_") for f in ours), [f.name for f in ours if not f.name.startswith("rpm_")]
    labels = {label for f in ours for s in f.samples for label in s.labels}
    assert not labels & IDENTIFYING, labels & IDENTIFYING


def test_prometheus_scrapes_every_process(prometheus: Prometheus, platform: Stack) -> None:
    up = {r["metric"]["job"]: r["value"][1] for r in prometheus.query("up")}
    assert up == dict.fromkeys(JOBS, "1")
    assert {t["labels"]["job"]: t["health"] for t in prometheus.targets()} == dict.fromkeys(JOBS, "up")
    # Our own metrics, through PromQL: each process's readiness flag or connection gauge.
    for promql in ("rpm_ingest_up", "rpm_streams_up", "rpm_alerts_up"):
        assert [r["value"][1] for r in prometheus.query(promql)] == ["1"], promql
    api = f"http://127.0.0.1:{platform.ports.api}"
    assert httpx.get(f"{api}/healthz", timeout=5).status_code == 200
    ok, detail = platform.health()["prometheus"]
    assert ok, detail
    assert f"{len(JOBS)}/{len(JOBS)} targets up" in detail, detail


def test_prometheus_refuses_bad_promql(prometheus: Prometheus) -> None:
    from infra.prometheus import PrometheusError

    with pytest.raises(PrometheusError, match="bad_data"):
        prometheus.query("sum(")


@needs_promtool
def test_generated_config_passes_promtool(platform: Stack, prometheus: Prometheus) -> None:
    written = platform.state / "prometheus" / "prometheus.yml"
    assert written.read_text() == render_config(platform.metrics_ports())
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "config", str(written)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for job, port in platform.metrics_ports().items():
        assert f"job_name: {job}" in written.read_text()
        assert f"127.0.0.1:{port}" in written.read_text()


def scraped(port: int, name: str, **labels: str) -> float:
    """One sample of a process's /metrics (0 when absent)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


def test_a_reading_moves_the_pipeline_metrics(prometheus: Prometheus, platform: Stack, db: psycopg.Connection) -> None:
    """A reading sent 30 s after its device time: counted in by the bridge, its end-to-end
    latency (device time to commit) at least those 30 s, the readings lag back to 0, and the
    same figures in Prometheus."""
    ingest, streams = platform.ports.ingest_metrics, platform.ports.streams_metrics
    latency = "rpm_streams_end_to_end_latency_seconds"
    received_before = scraped(ingest, "rpm_ingest_received_messages_total")
    count_before = scraped(streams, f"{latency}_count")
    sum_before = scraped(streams, f"{latency}_sum")
    patient = create_patient(db)
    creds = provision(platform, patient)
    device = Device(platform, creds.username, creds.password)
    device.connect()
    try:
        device.send(1, [reading("heart_rate", 72, "/min", datetime.now(UTC) - timedelta(seconds=30))])
        assert wait_for(lambda: count_rows(db, patient) == 1, timeout=60), "the reading was not stored"
    finally:
        device.close()

    assert scraped(ingest, "rpm_ingest_received_messages_total") >= received_before + 1
    assert wait_for(lambda: scraped(streams, f"{latency}_count") >= count_before + 1, timeout=10)
    assert scraped(streams, f"{latency}_sum") - sum_before >= 30
    lag = {"topic": READINGS.name}
    assert wait_for(lambda: scraped(streams, "rpm_streams_consumer_lag", **lag) == 0, timeout=30)
    seen = scraped(streams, f"{latency}_count")
    assert wait_for(
        lambda: [float(r["value"][1]) for r in prometheus.query(f'{latency}_count{{job="streams"}}')] >= [seen],
        timeout=30,
    ), "Prometheus did not scrape the worker's new figures"
