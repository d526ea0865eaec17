"""Small helpers over the SDK's panel builders: one call per panel, the datasource and the
query language decided by the query given, ids numbered in order of appearance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders.dashboard import Row
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from infra.grafana.datasources import POSTGRES, PROMETHEUS
from infra.grafana.sql import SqlFormat, SqlQuery

Query = cogbuilder.Builder[cogvariants.Dataquery]
REF_IDS: Final = "ABCDEFGH"


def promql(expr: str, legend: str = "__auto") -> prometheus.Dataquery:
    """A PromQL range query on the Prometheus datasource."""
    return prometheus.Dataquery().expr(expr).legend_format(legend).range().datasource(PROMETHEUS)


def sql(raw_sql: str, fmt: SqlFormat = "time_series") -> SqlQuery:
    """A raw SQL query on TimescaleDB as the read-only reporting login."""
    return SqlQuery(" ".join(raw_sql.split())).format(fmt).datasource(POSTGRES)


def _targets(queries: Sequence[Query]) -> list[Query]:
    for ref, query in zip(REF_IDS, queries, strict=False):
        query.ref_id(ref)  # type: ignore[attr-defined]  # every query builder here has ref_id
    return list(queries)


def _datasource(queries: Sequence[Query]) -> model.DataSourceRef:
    return POSTGRES if isinstance(queries[0], SqlQuery) else PROMETHEUS


def time_series(
    title: str, *queries: Query, unit: str = "short", description: str = "", w: int = 12, h: int = 8
) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(_datasource(queries))
        .targets(_targets(queries))
        .unit(unit)
        .span(w)
        .height(h)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .legend(common_builders.VizLegendOptions().show_legend(True).display_mode(common.LegendDisplayMode.LIST))
    )


def stat_panel(title: str, query: Query, unit: str = "short", description: str = "", w: int = 6) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(_datasource([query]))
        .targets(_targets([query]))
        .unit(unit)
        .span(w)
        .height(4)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def bar_gauge(title: str, query: Query, unit: str = "short", description: str = "", w: int = 8) -> bargauge.Panel:
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(_datasource([query]))
        .targets(_targets([query]))
        .unit(unit)
        .span(w)
        .height(8)
        .orientation(common.VizOrientation.HORIZONTAL)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(True))
    )


def table_panel(title: str, query: Query, description: str = "", w: int = 12, h: int = 8) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(_datasource([query]))
        .targets(_targets([query]))
        .span(w)
        .height(h)
    )


def row(title: str) -> Row:
    return Row(title)


def number_panels(panels: list[object]) -> None:
    """Stable panel ids (1, 2, ...) in order, rows included, so the JSON does not churn."""
    for i, panel in enumerate(panels, start=1):
        panel.id_val = i  # type: ignore[attr-defined]  # Panel and RowPanel both have id_val
