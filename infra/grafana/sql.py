"""A query of Grafana's PostgreSQL datasource (`grafana-postgresql-datasource`) as an SDK target.

The foundation SDK ships builders for many datasources but none for PostgreSQL; this is the
same shape its generated query types have (a `Dataquery` variant with `to_json`, and a builder),
so SQL targets go into the SDK's panel builders like its Prometheus ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

SqlFormat = Literal["time_series", "table"]


@dataclass
class SqlDataquery(cogvariants.Dataquery):
    """One raw SQL target: Grafana expands its macros and variables, then runs it."""

    raw_sql: str
    ref_id: str = "A"
    format: SqlFormat = "time_series"
    datasource: dashboard.DataSourceRef | None = field(default=None)

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "editorMode": "code",
            "format": self.format,
            "rawQuery": True,
            "rawSql": self.raw_sql,
        }
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        return payload


class SqlQuery(cogbuilder.Builder[SqlDataquery]):
    """Builder of a `SqlDataquery`, chained like the SDK's own query builders."""

    def __init__(self, raw_sql: str) -> None:
        self._internal = SqlDataquery(raw_sql=raw_sql)

    def build(self) -> SqlDataquery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def format(self, fmt: SqlFormat) -> Self:
        self._internal.format = fmt
        return self

    def datasource(self, ref: dashboard.DataSourceRef) -> Self:
        self._internal.datasource = ref
        return self
