"""Every PromQL query of the dashboards and the ops alert rules parses with Prometheus's own
parser (`promtool check rules`, Debian's prometheus package) and names only metrics our
processes export. Evaluating them against a real Prometheus scraping the running processes
is a further test (issue 14) that needs the stack's Prometheus.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import alerts.metrics
import alerts.notify.outbox
import alerts.reminders.loop
import api.metrics
import ingest.metrics
import streams.metrics
from core.progress import Progress
from infra.grafana.generate import PROVISIONING
from tests.infra.grafana_files import promql_queries

EXPORTERS = (ingest.metrics, streams.metrics, alerts.metrics, alerts.reminders.loop, alerts.notify.outbox, api.metrics)
METRIC = re.compile(r"\b(?:rpm|process)_[a-z0-9_]+")


def _expressions() -> dict[str, str]:
    found = {q.id: q.target["expr"] for q in promql_queries()}
    doc = yaml.safe_load((PROVISIONING / "alerting" / "rpm-ops.yaml").read_text())
    for rule in doc["groups"][0]["rules"]:
        model = rule["data"][0]["model"]
        if "expr" in model:
            found[f"alert/{rule['uid']}"] = model["expr"]
    return found


def _as_prometheus(expr: str) -> str:
    # Grafana's own variables, replaced as Grafana would for a 15 s scrape interval.
    return expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")


def test_every_promql_query_parses(tmp_path: Path) -> None:
    expressions = _expressions()
    assert len(expressions) >= 12
    rules = {
        "groups": [
            {
                "name": "grafana-panels",
                "rules": [
                    {"record": f"rpm:check:{i}", "expr": _as_prometheus(expr)}
                    for i, expr in enumerate(expressions.values())
                ],
            }
        ]
    }
    path = tmp_path / "panels.rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in result.stdout


def test_the_check_refuses_a_broken_query(tmp_path: Path) -> None:
    path = tmp_path / "broken.rules.yaml"
    broken = "sum(rate(rpm_ingest_received_messages_total[1m])"
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [{"record": "r:x", "expr": broken}]}]}))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode != 0


def test_every_metric_named_is_exported_by_a_process() -> None:
    assert EXPORTERS  # imported for their metrics' registration
    exported: set[str] = set()
    # The bridge and the alert service register their progress collector when they start.
    started = [Progress(component, 60.0, registry=None) for component in ("ingest", "alerts")]
    for family in [*REGISTRY.collect(), *(f for p in started for f in p.collect())]:
        exported |= {family.name, f"{family.name}_total", f"{family.name}_bucket"}
        exported |= {f"{family.name}_{suffix}" for suffix in ("count", "sum", "created")}
    unknown = {
        (where, name) for where, expr in _expressions().items() for name in METRIC.findall(expr) if name not in exported
    }
    assert not unknown, f"metrics no process exports: {sorted(unknown)}"
