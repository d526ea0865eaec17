"""The two datasources the dashboards read: TimescaleDB through the read-only reporting login
and Prometheus. One definition serves the provisioning file (Grafana fills `${VAR}` from its
environment) and the HTTP API (`rpm grafana push` fills in real values)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from grafana_foundation_sdk.models import dashboard

POSTGRES_TYPE: Final = "grafana-postgresql-datasource"
PROMETHEUS_TYPE: Final = "prometheus"
POSTGRES_UID: Final = "rpm-timescaledb"
PROMETHEUS_UID: Final = "rpm-prometheus"
# The reporting group role's login (core/migrations/0005_process_roles.sql, infra/stack/config.py DB_ROLES).
REPORTING_LOGIN: Final = "rpm_reporting_login"
DATABASE: Final = "rpm"

POSTGRES: Final = dashboard.DataSourceRef(type_val=POSTGRES_TYPE, uid=POSTGRES_UID)
PROMETHEUS: Final = dashboard.DataSourceRef(type_val=PROMETHEUS_TYPE, uid=PROMETHEUS_UID)


@dataclass(frozen=True)
class Targets:
    """Where the datasources point and the reporting login's password."""

    postgres_address: str  # host:port
    postgres_password: str
    prometheus_url: str
    sslmode: str = "disable"


# What the provisioning file says: Grafana substitutes these from its own environment.
PROVISIONING_TARGETS: Final = Targets(
    postgres_address="${RPM_GRAFANA_PG_ADDRESS}",
    postgres_password="${RPM_GRAFANA_PG_PASSWORD}",  # noqa: S106  # Grafana reads it from its environment
    prometheus_url="${RPM_GRAFANA_PROMETHEUS_URL}",
)


def datasources(targets: Targets) -> list[dict[str, object]]:
    """The datasources as the HTTP API (POST /api/datasources) and provisioning files take them."""
    return [
        {
            "uid": POSTGRES_UID,
            "name": "RPM TimescaleDB (reporting, read-only)",
            "type": POSTGRES_TYPE,
            "access": "proxy",
            "url": targets.postgres_address,
            "user": REPORTING_LOGIN,
            "isDefault": False,
            "jsonData": {
                "database": DATABASE,
                "sslmode": targets.sslmode,
                "postgresVersion": 1500,
                "timescaledb": True,
                "maxOpenConns": 5,
                "maxIdleConns": 2,
                "connMaxLifetime": 14400,
                "timeInterval": "1m",
            },
            "secureJsonData": {"password": targets.postgres_password},
        },
        {
            "uid": PROMETHEUS_UID,
            "name": "RPM Prometheus",
            "type": PROMETHEUS_TYPE,
            "access": "proxy",
            "url": targets.prometheus_url,
            "isDefault": True,
            "jsonData": {"httpMethod": "POST", "timeInterval": "15s"},
        },
    ]


def provisioning_file() -> dict[str, object]:
    """infra/grafana/provisioning/datasources/rpm.yaml."""
    return {"apiVersion": 1, "datasources": datasources(PROVISIONING_TARGETS)}
