"""The `rpm` command line: run the local stack, provision devices, drive the simulator, Grafana as code."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from psycopg import AsyncConnection
from rich.console import Console
from rich.table import Table

from core.catalogue import DEVICE_CLASSES
from core.clients.provisioning import ProvisioningError, provision_device, revoke_device
from infra.grafana.cli import app as grafana_app
from infra.stack import PLATFORM_COMPONENTS, SERVICE_COMPONENTS, Stack, StackError, StackSettings

app = typer.Typer(help="Remote patient monitoring platform", no_args_is_help=True)
stack_app = typer.Typer(help="The local stack (state in .rpm/)", no_args_is_help=True)
devices_app = typer.Typer(help="Device provisioning", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(devices_app, name="devices")
app.add_typer(grafana_app, name="grafana")
console = Console(soft_wrap=True)


def _stack() -> Stack:
    return Stack(StackSettings().state)


def _fail(exc: StackError) -> None:
    console.print(f"[bold red]failed[/] {exc.component}: {exc.reason}")
    if exc.log_tail:
        console.print(f"[dim]--- last lines of {exc.component}'s log ---[/]")
        console.print(exc.log_tail, markup=False, highlight=False)
    raise typer.Exit(1)


@stack_app.command("up")
def stack_up(
    demo: Annotated[bool, typer.Option(help="Create demo data and start the simulator")] = True,
) -> None:
    """Start the whole stack detached; waits for each component's health."""
    stack = _stack()
    console.print(f"Starting the local stack (state in {stack.state})")
    try:
        stack.start([*SERVICE_COMPONENTS, *PLATFORM_COMPONENTS])
        if demo:
            from infra.demo import DEMO_SCENARIOS, ensure_demo_data

            creds, sim = ensure_demo_data(stack)
            scenarios = [arg for spec in DEMO_SCENARIOS for arg in ("--scenario", spec)]
            stack.start_simulator(
                sim, "--no-progress", "--ground-truth", str(stack.state / "ground-truth.jsonl"), *scenarios
            )
        stack.start_watchdog()
    except StackError as exc:
        _fail(exc)
    api = f"http://127.0.0.1:{stack.ports.api}"
    console.print("\n[bold green]The platform is running.[/]")
    console.print(f"  API          {api}  (OpenAPI docs: {api}/docs)")
    console.print(f"  Clinician    {api}/  (log in; live inbox {api}/inbox, my patients {api}/patients)")
    console.print(
        f"  Patient      {api}/  (log in as a demo patient: my health {api}/me, care plan {api}/me/care-plan, "
        f"consent {api}/me/consent, who viewed my record {api}/me/access-log)"
    )
    console.print(
        f"  MQTT         127.0.0.1:{stack.ports.mqtt}   Kafka {stack.kafka_bootstrap}   "
        f"PostgreSQL 127.0.0.1:{stack.ports.postgres}"
    )
    console.print(
        f"  Metrics      http://127.0.0.1:{stack.ports.ingest_metrics}/metrics (ingest), "
        f"http://127.0.0.1:{stack.ports.streams_metrics}/metrics (streams), "
        f"http://127.0.0.1:{stack.ports.alerts_metrics}/metrics (alerts), "
        f"http://127.0.0.1:{stack.ports.api_metrics}/metrics (api)"
    )
    console.print(f"  Prometheus   http://127.0.0.1:{stack.ports.prometheus}  (scrapes every process's metrics)")
    console.print(
        f"  Alert e-mail SMTP 127.0.0.1:{stack.ports.smtp} (the stack's own server); "
        f"each message lands as one file in {stack.maildir}/new"
    )
    if demo:
        data = json.loads(creds.read_text())
        console.print(f"  Demo logins  written to {creds}")
        console.print(f"    clinician  {data['clinician']['username']} / {data['clinician']['password']}")
        for p in data["patients"]:
            console.print(f"    patient    {p['username']} / {p['password']}  ({p['patient_id']})")
        console.print(
            f"  Try          curl -s -d 'username={data['clinician']['username']}&password=...' {api}/api/v1/auth/token"
        )
    console.print("  Status: make status    Logs: make logs    Stop: make stop")


@stack_app.command("down")
def stack_down() -> None:
    """Stop every process the stack started (and nothing else)."""
    stopped = _stack().stop()
    console.print(f"Stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@stack_app.command("status")
def stack_status() -> None:
    """Each component's health and the readings stored in the last minute."""
    stack = _stack()
    from infra.watchdog import read_restarts

    table = Table("component", "health", "detail", "restarts")
    health = stack.health()
    restarts = read_restarts(stack)
    for name, (ok, detail) in health.items():
        record = restarts.get(name)
        seen = (
            f"{record.count} (last {time.strftime('%H:%M:%S', time.localtime(record.last_at))}, {record.last_exit})"
            if record and record.count
            else "0"
        )
        if record and record.next_try_at:
            seen += f"; crashed ({record.last_exit}), restarting"
        table.add_row(name, "[green]healthy[/]" if ok else "[red]DOWN[/]", detail, seen)
    console.print(table)
    if health.get("postgres", (False, ""))[0]:
        console.print(f"Readings stored in the last minute: [bold]{stack.readings_last_minute()}[/]")
    if not all(ok for ok, _ in health.values()):
        raise typer.Exit(1)


@stack_app.command("logs")
def stack_logs(
    component: Annotated[str | None, typer.Argument(help="One component; all when omitted")] = None,
    lines: Annotated[int, typer.Option("--lines", "-n")] = 40,
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
) -> None:
    """Show the last lines of the components' logs (or follow them)."""
    stack = _stack()
    files = sorted(stack.logs.glob(f"{component or '*'}.log"))
    if not files:
        console.print("No logs yet.")
        raise typer.Exit(1)
    argv = ["tail", "-n", str(lines), *(["-F"] if follow else []), *map(str, files)]
    raise typer.Exit(subprocess.call(argv))


@devices_app.command("provision")
def devices_provision(
    device_id: str,
    patient_id: Annotated[str, typer.Option("--patient")],
    device_class: Annotated[str, typer.Option("--class", help=", ".join(DEVICE_CLASSES))] = "wearable",
    valid_from: Annotated[datetime | None, typer.Option("--from", help="Binding starts (default now)")] = None,
    valid_to: Annotated[datetime | None, typer.Option("--until", help="Binding ends (default open)")] = None,
) -> None:
    """Create a device, bind it to a patient and issue its MQTT credentials (printed once)."""
    stack = _stack()
    start, end = (d if d is None or d.tzinfo else d.replace(tzinfo=UTC) for d in (valid_from, valid_to))

    async def run() -> None:
        async with await AsyncConnection.connect(stack.admin_db_url) as conn, conn.transaction():
            with stack.broker_admin() as admin:
                creds = await provision_device(
                    conn,
                    admin,
                    device_id=device_id,
                    patient_id=patient_id,
                    device_class=device_class,
                    valid_from=start,
                    valid_to=end,
                )
        console.print_json(
            json.dumps(
                {
                    "device_id": creds.device_id,
                    "patient_id": creds.patient_id,
                    "username": creds.username,
                    "password": creds.password,
                }
            )
        )

    try:
        asyncio.run(run())
    except ProvisioningError as exc:
        console.print(f"[red]refused:[/] {exc}")
        raise typer.Exit(2) from exc


@devices_app.command("revoke")
def devices_revoke(device_id: str) -> None:
    """Revoke a device: its binding ends and the broker refuses it at once."""
    stack = _stack()

    async def run() -> None:
        async with await AsyncConnection.connect(stack.admin_db_url) as conn, conn.transaction():
            with stack.broker_admin() as admin:
                await revoke_device(conn, admin, device_id)

    try:
        asyncio.run(run())
    except ProvisioningError as exc:
        console.print(f"[red]refused:[/] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"Revoked {device_id}")


@app.command("env-example")
def env_example() -> None:
    """Print .env.example: every setting with its description and default."""
    from infra.envfile import render

    sys.stdout.write(render())


def _mount_simulator() -> None:
    try:
        from devices.simulator.cli import app as sim_app
    except ImportError:  # the simulator package is optional in a slim deployment
        return
    app.add_typer(sim_app, name="sim")


_mount_simulator()

if __name__ == "__main__":
    sys.exit(app())
