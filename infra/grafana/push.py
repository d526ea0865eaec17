"""Upload the datasources, the folder, the dashboards and the ops alert rules to a running
Grafana through its HTTP API (grafana-client). Every step creates or overwrites, so pushing
twice leaves Grafana as pushing once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

from infra.grafana import alerts
from infra.grafana.dashboards import FOLDER_TITLE, FOLDER_UID
from infra.grafana.datasources import Targets, datasources
from infra.grafana.generate import dashboard_json

NOT_FOUND = 404


@dataclass
class PushReport:
    datasources: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    dashboards: list[str] = field(default_factory=list)
    rule_groups: list[str] = field(default_factory=list)


def _exists(get: Callable[[], Any]) -> bool:
    try:
        get()
    except GrafanaClientError as exc:
        if exc.status_code == NOT_FOUND:
            return False
        raise
    return True


def push(
    url: str,
    targets: Targets,
    *,
    credential: str | tuple[str, str] | None = None,
    timeout: float = 10.0,
) -> PushReport:
    """Push everything to the Grafana at `url` (credential: an API token, or (user, password);
    else the user and password in the URL)."""
    api = GrafanaApi.from_url(url, credential=credential, timeout=timeout)
    report = PushReport()

    for ds in datasources(targets):
        uid = str(ds["uid"])
        if _exists(lambda uid=uid: api.datasource.get_datasource_by_uid(uid)):  # type: ignore[misc]
            api.datasource.update_datasource_by_uid(uid, ds)
        else:
            api.datasource.create_datasource(ds)
        report.datasources.append(uid)

    if _exists(lambda: api.folder.get_folder(FOLDER_UID)):
        api.folder.update_folder(FOLDER_UID, title=FOLDER_TITLE, overwrite=True)
    else:
        api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
    report.folders.append(FOLDER_UID)

    for uid, board in dashboard_json().items():
        api.dashboard.update_dashboard(
            {"dashboard": board, "folderUid": FOLDER_UID, "overwrite": True, "message": "rpm grafana push"}
        )
        report.dashboards.append(uid)

    group = alerts.rule_group()
    api.alertingprovisioning.update_rule_group(FOLDER_UID, alerts.GROUP, group)
    report.rule_groups.append(alerts.GROUP)
    return report
