"""Small helpers over the SDK's panel builders: one call per panel, the datasource and the
query language decided by the query given (a plain string is SQL), ids numbered in order of
appearance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, TypeVar

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


# The panel builders sharing the frame below (each one's methods return the builder itself).
AnyPanel = TypeVar("AnyPanel", timeseries.Panel, stat.Panel, bargauge.Panel, table.Panel)


def _framed(
    panel: AnyPanel, title: str, queries: Sequence[Query | str], fmt: SqlFormat, description: str, w: int, h: int
) -> AnyPanel:
    """Title, description, queries (a plain string is raw SQL in `fmt`) with their datasource,
    width and height: what every panel here sets."""
    built = [sql(q, fmt) if isinstance(q, str) else q for q in queries]
    return (
        panel.title(title)
        .description(description)
        .datasource(_datasource(built))
        .targets(_targets(built))
        .span(w)
        .height(h)
    )


def time_series(
    title: str, *queries: Query | str, unit: str = "short", description: str = "", w: int = 12, h: int = 8
) -> timeseries.Panel:
    """A time series of PromQL or SQL queries (SQL as a string: time-series format)."""
    return (
        _framed(timeseries.Panel(), title, queries, "time_series", description, w, h)
        .unit(unit)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .legend(common_builders.VizLegendOptions().show_legend(True).display_mode(common.LegendDisplayMode.LIST))
    )


def stat_panel(title: str, query: Query | str, unit: str = "short", description: str = "", w: int = 6) -> stat.Panel:
    """One value, the last one (SQL as a string: table format)."""
    return (
        _framed(stat.Panel(), title, [query], "table", description, w, 4)
        .unit(unit)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def bar_gauge(title: str, query: Query | str, unit: str = "short", description: str = "", w: int = 8) -> bargauge.Panel:
    """Horizontal bars, one per row (SQL as a string: table format)."""
    return (
        _framed(bargauge.Panel(), title, [query], "table", description, w, 8)
        .unit(unit)
        .orientation(common.VizOrientation.HORIZONTAL)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(True))
    )


def table_panel(title: str, query: Query | str, description: str = "", w: int = 12, h: int = 8) -> table.Panel:
    """A table (SQL as a string: table format)."""
    return _framed(table.Panel(), title, [query], "table", description, w, h)


def row(title: str) -> Row:
    return Row(title)


def number_panels(panels: list[object]) -> None:
    """Stable panel ids (1, 2, ...) in order, rows included, so the JSON does not churn."""
    for i, panel in enumerate(panels, start=1):
        panel.id_val = i  # type: ignore[attr-defined]  # Panel and RowPanel both have id_val
