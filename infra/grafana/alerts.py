"""The ops alert rules Grafana evaluates: ingest stalled, lag growing, database down.

Each rule is query A (Prometheus or the TimescaleDB reporting login), B reduces it to one
number, C is the threshold that fires. The same rule group goes to the provisioning file
(infra/grafana/provisioning/alerting/rpm-ops.yaml) and to the alerting provisioning API.
"""

from __future__ import annotations

from typing import Final, Literal

from grafana_foundation_sdk.builders import alerting, expr
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as alerting_model

from infra.grafana.dashboards import FOLDER_UID
from infra.grafana.datasources import POSTGRES_UID, PROMETHEUS_UID
from infra.grafana.panels import promql, sql

GROUP: Final = "rpm-ops"
INTERVAL_S: Final = 60
EXPRESSION_UID: Final = "__expr__"


def _rule(
    uid: str,
    title: str,
    *,
    datasource_uid: str,
    query: cogbuilder.Builder[cogvariants.Dataquery],
    op: Literal["gt", "lt"],
    threshold: float,
    for_: str,
    summary: str,
    no_data: Literal["Alerting", "NoData", "OK"],
) -> alerting.Rule:
    window = alerting_model.RelativeTimeRange(from_val=600, to=0)
    return (
        alerting.Rule(title)
        .uid(uid)
        .folder_uid(FOLDER_UID)
        .rule_group(GROUP)
        .org_id(1)
        .condition("C")
        .queries(
            [
                alerting.Query("A").datasource_uid(datasource_uid).relative_time_range(window).model(query),
                alerting.Query("B")
                .datasource_uid(EXPRESSION_UID)
                .model(expr.TypeReduce().ref_id("B").expression("A").reducer("last")),
                alerting.Query("C")
                .datasource_uid(EXPRESSION_UID)
                .model(
                    expr.TypeThreshold()
                    .ref_id("C")
                    .expression("B")
                    .conditions(
                        [
                            expr.ExprTypeThresholdConditions().evaluator(
                                expr.ExprTypeThresholdConditionsEvaluator().type(op).params([threshold])
                            )
                        ]
                    )
                ),
            ]
        )
        .for_val(for_)
        .no_data_state(no_data)
        .exec_err_state("Alerting")
        .labels({"team": "ops", "service": "rpm"})
        .annotations({"summary": summary, "runbook_url": "docs/operations.md#dashboards-and-ops-alerts"})
    )


def rules() -> list[alerting.Rule]:
    return [
        _rule(
            "rpm-ingest-stalled",
            "Ingest stalled",
            datasource_uid=PROMETHEUS_UID,
            query=promql("sum(rate(rpm_ingest_forwarded_readings_total[5m])) or vector(0)", "forwarded").ref_id("A"),
            op="lt",
            threshold=0.001,
            for_="10m",
            summary="The bridges forwarded no reading to Kafka for 10 minutes (or no bridge is scraped).",
            no_data="Alerting",
        ),
        _rule(
            "rpm-lag-growing",
            "Consumer lag growing",
            datasource_uid=PROMETHEUS_UID,
            query=promql(
                "(sum(deriv(rpm_streams_consumer_lag[10m])) or vector(0))"
                " + (sum(deriv(rpm_alerts_consumer_lag[10m])) or vector(0))",
                "growth per second",
            ).ref_id("A"),
            op="gt",
            threshold=0.0,
            for_="15m",
            summary="Records waiting for the stream workers or the alert service kept growing for 15 minutes.",
            no_data="OK",
        ),
        _rule(
            "rpm-database-down",
            "Database down",
            datasource_uid=POSTGRES_UID,
            query=sql("SELECT count(*) AS up FROM pg_stat_database WHERE datname = current_database()", "table").ref_id(
                "A"
            ),
            op="lt",
            threshold=1.0,
            for_="2m",
            summary="TimescaleDB does not answer the reporting login (the query fails or returns nothing).",
            no_data="Alerting",
        ),
    ]


def rule_group() -> dict[str, object]:
    """The group as PUT /api/v1/provisioning/folder/{folderUid}/rule-groups/{group} takes it."""
    import json

    built = [json.loads(json.dumps(r.build(), cls=JSONEncoder)) for r in rules()]
    return {"title": GROUP, "folderUid": FOLDER_UID, "interval": INTERVAL_S, "rules": built}


def provisioning_file() -> dict[str, object]:
    """infra/grafana/provisioning/alerting/rpm-ops.yaml (Grafana's file provisioning format)."""
    group = rule_group()
    rules_ = group["rules"]
    assert isinstance(rules_, list)
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": GROUP,
                "folder": FOLDER_UID,
                "interval": f"{INTERVAL_S}s",
                "rules": [
                    {k: v for k, v in rule.items() if k not in ("folderUID", "ruleGroup", "orgID")} for rule in rules_
                ],
            }
        ],
    }
