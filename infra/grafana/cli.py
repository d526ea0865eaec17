"""`rpm grafana generate` and `rpm grafana push`: the dashboards, datasources and ops alert
rules as files, or uploaded to a running Grafana."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from infra.grafana.datasources import Targets
from infra.grafana.generate import PROVISIONING, differences, write

app = typer.Typer(help="Grafana dashboards, datasources and ops alert rules as code", no_args_is_help=True)
console = Console(soft_wrap=True)


@app.command("generate")
def generate(
    check: Annotated[
        bool, typer.Option(help="Only compare the committed files with the code; exit 1 if they differ")
    ] = False,
) -> None:
    """Write infra/grafana/provisioning/ (dashboards JSON, datasource, dashboard and alerting YAML)."""
    if check:
        problems = differences()
        for line in problems:
            console.print(f"[red]{line}[/]")
        if problems:
            console.print("Regenerate with: .venv/bin/rpm grafana generate")
            raise typer.Exit(1)
        console.print(f"{PROVISIONING} matches the code.")
        return
    for rel in write():
        console.print(f"wrote {PROVISIONING / rel}")


def _local_stack_targets() -> tuple[str, str | None, str]:
    """Addresses and the reporting password of the local stack (`make run`), where it exists;
    read from its state files, never created here."""
    from infra.stack import Ports, StackSettings

    state = StackSettings().state
    ports_file, secrets_file = state / "ports.json", state / "secrets.json"
    ports = Ports(**json.loads(ports_file.read_text())) if ports_file.exists() else Ports()
    password = None
    if secrets_file.exists():
        password = json.loads(secrets_file.read_text()).get("pg_role_passwords", {}).get("reporting")
    prometheus_port = getattr(ports, "prometheus", 9090)
    return f"127.0.0.1:{ports.postgres}", password, f"http://127.0.0.1:{prometheus_port}"


@app.command("push")
def push_command(
    url: Annotated[str, typer.Option(help="Grafana's URL, e.g. http://admin:admin@127.0.0.1:3000")],
    token: Annotated[
        str | None, typer.Option(envvar="RPM_GRAFANA_TOKEN", help="A service-account token (else the URL's user)")
    ] = None,
    pg_address: Annotated[str | None, typer.Option(help="host:port of TimescaleDB as Grafana reaches it")] = None,
    pg_password: Annotated[
        str | None,
        typer.Option(
            envvar="RPM_GRAFANA_PG_PASSWORD", help="Password of rpm_reporting_login (default: the local stack's)"
        ),
    ] = None,
    prometheus_url: Annotated[str | None, typer.Option(help="Prometheus's URL as Grafana reaches it")] = None,
) -> None:
    """Upload the datasources, the folder, the dashboards and the ops alert rules (create or overwrite)."""
    from grafana_client.client import GrafanaException
    from requests import RequestException

    from infra.grafana.push import push

    local_pg, local_password, local_prometheus = _local_stack_targets()
    password = pg_password or local_password
    if password is None:
        console.print("[red]refused:[/] no --pg-password and no local stack secrets (.rpm/secrets.json)")
        raise typer.Exit(2)
    targets = Targets(
        postgres_address=pg_address or local_pg,
        postgres_password=password,
        prometheus_url=prometheus_url or local_prometheus,
    )
    try:
        report = push(url, targets, credential=token)
    except (GrafanaException, RequestException) as exc:
        console.print(f"[red]push failed:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(
        f"Pushed datasources {', '.join(report.datasources)}; folder {', '.join(report.folders)}; "
        f"dashboards {', '.join(report.dashboards)}; alert rule group {', '.join(report.rule_groups)}"
    )
