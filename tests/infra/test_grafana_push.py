"""`rpm grafana push` against a recording HTTP server on loopback.

The server STANDS IN FOR GRAFANA: no Grafana server can be installed here. It answers the
few routes of Grafana's HTTP API that the push uses the way Grafana documents them (404 for
an unknown datasource or folder uid, 200 with a small JSON body otherwise) and records every
request, so the test checks what Grafana would have received: paths, methods, credentials
and bodies (datasource fields, the folder uid, each dashboard's JSON with overwrite, the
alert rule group on the provisioning API).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typer.testing import CliRunner

from infra.cli import app
from tests.infra.grafana_files import committed_dashboards


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class StandInGrafana:
    """What the stand-in knows (created datasources and folders) and every request it got."""

    requests: list[Recorded] = field(default_factory=list)
    datasources: set[str] = field(default_factory=set)
    folders: set[str] = field(default_factory=set)
    url: str = ""

    def answer(self, method: str, path: str, body: Any) -> tuple[int, object]:
        if method == "GET" and path.startswith("/api/datasources/uid/"):
            uid = path.rsplit("/", 1)[1]
            return (200, {"uid": uid, "id": 1}) if uid in self.datasources else (404, {"message": "not found"})
        if method == "POST" and path == "/api/datasources":
            self.datasources.add(body["uid"])
            return 200, {"id": 1, "message": "Datasource added", "name": body["name"]}
        if method == "PUT" and path.startswith("/api/datasources/uid/"):
            return 200, {"id": 1, "message": "Datasource updated"}
        if method == "GET" and path.startswith("/api/folders/"):
            uid = path.rsplit("/", 1)[1]
            return (200, {"uid": uid, "title": "x"}) if uid in self.folders else (404, {"message": "not found"})
        if method == "POST" and path == "/api/folders":
            self.folders.add(body["uid"])
            return 200, {"uid": body["uid"], "title": body["title"]}
        if method == "PUT" and path.startswith("/api/folders/"):
            return 200, {"uid": path.rsplit("/", 1)[1]}
        if method == "POST" and path == "/api/dashboards/db":
            return 200, {"status": "success", "uid": body["dashboard"]["uid"], "version": 1}
        if method == "PUT" and path.startswith("/api/v1/provisioning/folder/"):
            return 200, body
        return 404, {"message": "not a route of this stand-in"}


@pytest.fixture
def grafana() -> Iterator[StandInGrafana]:
    state = StandInGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            state.requests.append(Recorded(self.command, self.path, dict(self.headers.items()), body))
            status, answer = state.answer(self.command, self.path, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _handle  # noqa: N815  # BaseHTTPRequestHandler's names

        def log_message(self, format: str, *args: object) -> None:  # the base's signature
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://admin:s3cret@127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _push(grafana: StandInGrafana) -> None:
    args = ["grafana", "push", "--url", grafana.url, "--pg-address", "db.internal:5432"]
    args += ["--pg-password", "reporting-pw", "--prometheus-url", "http://prometheus.internal:9090"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output


def test_push_sends_what_the_grafana_http_api_expects(grafana: StandInGrafana) -> None:
    _push(grafana)
    calls = [(r.method, r.path) for r in grafana.requests]
    assert calls == [
        ("GET", "/api/datasources/uid/rpm-timescaledb"),
        ("POST", "/api/datasources"),
        ("GET", "/api/datasources/uid/rpm-prometheus"),
        ("POST", "/api/datasources"),
        ("GET", "/api/folders/rpm"),
        ("POST", "/api/folders"),
        *[("POST", "/api/dashboards/db")] * 5,
        ("PUT", "/api/v1/provisioning/folder/rpm/rule-groups/rpm-ops"),
    ]
    basic = "Basic " + base64.b64encode(b"admin:s3cret").decode()
    assert all(r.headers.get("Authorization") == basic for r in grafana.requests)

    pg, prom = grafana.requests[1].body, grafana.requests[3].body
    assert pg["type"] == "grafana-postgresql-datasource"
    assert pg["uid"] == "rpm-timescaledb"
    assert pg["url"] == "db.internal:5432"
    assert pg["user"] == "rpm_reporting_login"
    assert pg["jsonData"]["database"] == "rpm"
    assert pg["jsonData"]["timescaledb"] is True
    assert pg["secureJsonData"] == {"password": "reporting-pw"}
    assert prom["type"] == "prometheus"
    assert prom["url"] == "http://prometheus.internal:9090"

    assert grafana.requests[5].body == {"title": "Remote patient monitoring", "uid": "rpm"}

    pushed = {r.body["dashboard"]["uid"]: r.body for r in grafana.requests if r.path == "/api/dashboards/db"}
    assert pushed.keys() == committed_dashboards().keys()
    for uid, body in pushed.items():
        assert body["overwrite"] is True
        assert body["folderUid"] == "rpm"
        assert body["dashboard"] == committed_dashboards()[uid]  # the committed JSON, as generated

    group = grafana.requests[-1].body
    assert group["title"] == "rpm-ops"
    assert group["folderUid"] == "rpm"
    assert group["interval"] == 60
    rules = {r["uid"]: r for r in group["rules"]}
    assert set(rules) == {"rpm-ingest-stalled", "rpm-lag-growing", "rpm-database-down"}
    for rule in rules.values():
        assert rule["folderUID"] == "rpm"
        assert rule["orgID"] == 1
        assert rule["ruleGroup"] == "rpm-ops"
        assert rule["condition"] == "C"
        assert rule["data"][1]["datasourceUid"] == "__expr__"
    assert "rpm_ingest_forwarded_readings_total" in rules["rpm-ingest-stalled"]["data"][0]["model"]["expr"]
    assert rules["rpm-database-down"]["data"][0]["datasourceUid"] == "rpm-timescaledb"


def test_second_push_updates_in_place(grafana: StandInGrafana) -> None:
    _push(grafana)
    grafana.requests.clear()
    _push(grafana)
    calls = [(r.method, r.path) for r in grafana.requests]
    assert ("PUT", "/api/datasources/uid/rpm-timescaledb") in calls
    assert ("PUT", "/api/datasources/uid/rpm-prometheus") in calls
    assert ("PUT", "/api/folders/rpm") in calls
    assert ("POST", "/api/datasources") not in calls
    assert ("POST", "/api/folders") not in calls
    folder_put = next(r for r in grafana.requests if r.method == "PUT" and r.path == "/api/folders/rpm")
    assert folder_put.body == {"title": "Remote patient monitoring", "overwrite": True}


def test_push_reports_a_grafana_error(grafana: StandInGrafana) -> None:
    result = CliRunner().invoke(app, ["grafana", "push", "--url", grafana.url + "/not-grafana", "--pg-password", "x"])
    assert result.exit_code == 1
    assert "push failed" in result.output
