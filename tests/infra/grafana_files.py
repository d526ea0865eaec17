"""The committed Grafana files as the tests read them: dashboards and their panels' queries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from infra.grafana.datasources import POSTGRES_UID, PROMETHEUS_UID
from infra.grafana.generate import PROVISIONING


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    panel_type: str
    datasource_uid: str
    target: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.dashboard}/{self.panel}/{self.target['refId']}"


def committed_dashboards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((PROVISIONING / "dashboards").glob("*.json"))}


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def panel_queries(datasource_uid: str) -> list[PanelQuery]:
    found = []
    for uid, board in committed_dashboards().items():
        for panel in _panels(board.get("panels", [])):
            for target in panel.get("targets", []):
                ds = target.get("datasource") or panel.get("datasource") or {}
                if ds.get("uid") == datasource_uid:
                    found.append(PanelQuery(uid, panel["title"], panel["type"], datasource_uid, target))
    return found


def sql_queries() -> list[PanelQuery]:
    return panel_queries(POSTGRES_UID)


def promql_queries() -> list[PanelQuery]:
    return panel_queries(PROMETHEUS_UID)
