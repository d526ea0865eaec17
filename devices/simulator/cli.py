"""Command line of the device simulator (`python -m devices.simulator`, mounted as `rpm sim`).

run        simulate the devices of a credentials file against the MQTT broker
provision  create simulated patients (with consent) and provision their devices
scenarios  list the scenarios and their parameters
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from core.settings import KafkaSettings
from devices.simulator.config import ConfigError, Roster, RunOptions, load_credentials, parse_start, write_credentials
from devices.simulator.provisioning import parse_mix, plan_population
from devices.simulator.runner import SimulatorError, install_stop_handlers, run_processes, run_worker
from devices.simulator.scenarios import SCENARIO_HELP, ScenarioError, ScenarioRequest
from devices.simulator.view import LiveView, summary_lines

DEFAULT_KAFKA_BOOTSTRAP: str = KafkaSettings.model_fields["kafka_bootstrap"].default
app = typer.Typer(
    help="Simulated patients wearing real MQTT devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


@app.command()
def run(
    credentials: Annotated[Path | None, typer.Option(help="Credentials file written by `provision`")] = None,
    rate: Annotated[float | None, typer.Option(help="Offered load, readings per second (wall clock)")] = None,
    duration: Annotated[float, typer.Option(help="Seconds to run; 0 runs until SIGTERM")] = 0.0,
    speed: Annotated[float, typer.Option(help="Simulated seconds per wall-clock second")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed: the same seed and start give the same readings")] = 1,
    scenario: Annotated[
        list[str] | None, typer.Option(help="NAME[:key=value,...]; repeatable; see `scenarios`")
    ] = None,
    ground_truth: Annotated[Path | None, typer.Option(help="JSON-lines log of what was sent and expected")] = None,
    queue_dir: Annotated[Path, typer.Option(help="Directory of the on-disk store-and-forward queue")] = Path(
        ".rpm/simulator-queue"
    ),
    workers: Annotated[int, typer.Option(min=1, help="Processes to spread the devices over")] = 1,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No live view (CI, services)")] = False,
    mqtt_host: Annotated[str, typer.Option(envvar="RPM_MQTT_HOST", help="MQTT broker host")] = "127.0.0.1",
    mqtt_port: Annotated[int, typer.Option(envvar="RPM_MQTT_PORT", help="MQTT broker port")] = 18830,
    start: Annotated[str | None, typer.Option(help="Simulated start: ISO 8601 or offset like -2d")] = None,
    patients: Annotated[int | None, typer.Option(help="Use only the first N patients (or N synthetic ones)")] = None,
    cohorts: Annotated[str | None, typer.Option(help="Cohort mix of synthetic patients, e.g. copd=1")] = None,
    interval: Annotated[float, typer.Option(help="Wearable interval in seconds when --rate is not set")] = 5.0,
    window: Annotated[int, typer.Option(min=1, help="QoS 1 messages in flight per device")] = 32,
    drain: Annotated[float, typer.Option(help="Seconds to wait for acknowledgements at the end")] = 2.0,
    connect_timeout: Annotated[float, typer.Option(help="Seconds to wait for the first logins")] = 15.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="No broker: only write the ground truth")] = False,
    summary_json: Annotated[Path | None, typer.Option(help="Write the final counters as JSON here")] = None,
) -> None:
    """Run the simulated devices (MQTT v5, QoS 1, store-and-forward) until --duration or SIGTERM."""
    try:
        if credentials is not None:
            roster = load_credentials(credentials).limit(patients)
        elif dry_run and patients:
            roster = plan_population(patients, parse_mix(cohorts), seed)
        else:
            raise ConfigError("--credentials FILE is required (or --dry-run --patients N)")
        for text in scenario or []:
            ScenarioRequest.parse(text)
        now = time.time()
        opts = RunOptions(
            mqtt_host=mqtt_host,
            mqtt_port=mqtt_port,
            rate=rate,
            duration=duration,
            speed=speed,
            seed=seed,
            start=parse_start(start, now, speed, duration),
            wall0=now,
            interval=interval,
            # An absolute --start must match to resume a killed run; a relative one moves with now.
            start_explicit=bool(start) and not str(start).startswith(("+", "-")),
            scenarios=list(scenario or []),
            ground_truth=ground_truth,
            queue_dir=queue_dir,
            window=window,
            connect_timeout=connect_timeout,
            drain_timeout=drain,
            dry_run=dry_run,
            workers=workers,
        )
    except (ConfigError, ScenarioError) as exc:
        raise _fail(str(exc)) from exc
    console = Console(stderr=False)

    def warn(message: str) -> None:
        err.print(f"[yellow]warning:[/] {message}", highlight=False)

    try:
        with LiveView(console, enabled=not no_progress and console.is_terminal) as view:
            if workers > 1:
                stats = run_processes(opts, roster, view.update, warn)
            else:
                stats = asyncio.run(_run_one(opts, roster, view.update, warn))
            view.update(stats)
    except (SimulatorError, ScenarioError, ConfigError) as exc:
        raise _fail(str(exc)) from exc
    for line in summary_lines(stats):
        console.print(line, highlight=False)
    if summary_json is not None:
        summary_json.write_text(json.dumps(stats, indent=2) + "\n")


async def _run_one(opts: RunOptions, roster: Roster, report: Any, warn: Any) -> dict[str, Any]:
    stop = asyncio.Event()
    install_stop_handlers(stop)
    return await run_worker(opts, roster, stop=stop, report=report, warn=warn)


@app.command()
def provision(
    patients: Annotated[int, typer.Option(min=1, help="How many patients to create")],
    out: Annotated[Path, typer.Option(help="Credentials file to write")] = Path(".rpm/simulator-credentials.json"),
    prefix: Annotated[str, typer.Option(help="Prefix of patient and device ids")] = "sim",
    cohorts: Annotated[str | None, typer.Option(help="Cohort mix, e.g. healthy=0.5,copd=0.5")] = None,
    only: Annotated[list[str] | None, typer.Option(help="Provision only these device classes")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the cohort allocation")] = 1,
    backdate_days: Annotated[
        float, typer.Option(help="Bindings and consent start this many days ago (for runs that start in the past)")
    ] = 2.0,
    database_url: Annotated[str, typer.Option(envvar="RPM_DATABASE_URL", help="Database URL (insert rights)")] = "",
    mqtt_host: Annotated[str, typer.Option(envvar="RPM_MQTT_HOST")] = "127.0.0.1",
    mqtt_port: Annotated[int, typer.Option(envvar="RPM_MQTT_PORT")] = 18830,
    mqtt_admin_username: Annotated[str, typer.Option(envvar="RPM_MQTT_ADMIN_USERNAME")] = "rpm-admin",
    mqtt_admin_password: Annotated[str, typer.Option(envvar="RPM_MQTT_ADMIN_PASSWORD")] = "",
    kafka_bootstrap: Annotated[
        str,
        typer.Option(envvar="RPM_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers (care plans go to rpm.care-plans.v1)"),
    ] = DEFAULT_KAFKA_BOOTSTRAP,
    care_plans: Annotated[
        bool, typer.Option("--care-plans/--no-care-plans", help="Publish each patient's care plan")
    ] = True,
) -> None:
    """Create N patients with active consent, provision their devices, write the credentials
    file, publish their care plans."""
    import psycopg
    from aiokafka.errors import KafkaError

    from core.clients.broker_admin import BrokerAdmin, BrokerAdminError
    from core.clients.provisioning import ProvisioningError
    from devices.simulator.provisioning import backdated, publish_care_plans
    from devices.simulator.provisioning import care_plans as plans_of
    from devices.simulator.provisioning import provision as do_provision

    if not database_url:
        raise _fail("a database URL is needed: --database-url or RPM_DATABASE_URL")
    if not mqtt_admin_password:
        raise _fail("the MQTT admin password is needed: --mqtt-admin-password or RPM_MQTT_ADMIN_PASSWORD")
    try:
        plan = plan_population(patients, parse_mix(cohorts), seed, prefix, tuple(only or ()))
    except ConfigError as exc:
        raise _fail(str(exc)) from exc

    valid_from = backdated(backdate_days)

    async def go() -> Roster:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            with BrokerAdmin(mqtt_host, mqtt_port, mqtt_admin_username, mqtt_admin_password) as admin:
                return await do_provision(conn, admin, plan, valid_from=valid_from)

    try:
        roster = asyncio.run(go())
    except (psycopg.Error, BrokerAdminError, ProvisioningError, OSError) as exc:
        raise _fail(f"provisioning failed: {exc}") from exc
    write_credentials(out, roster)
    typer.echo(f"provisioned {len(roster.patients)} patients and {len(roster.devices)} devices -> {out}")
    if care_plans:
        try:
            sent = asyncio.run(publish_care_plans(kafka_bootstrap, plans_of(roster, valid_from)))
        except (KafkaError, OSError, TimeoutError) as exc:
            raise _fail(
                f"care plans not published to Kafka at {kafka_bootstrap}: {exc or type(exc).__name__} "
                "(check --kafka-bootstrap or RPM_KAFKA_BOOTSTRAP; the credentials file is written)"
            ) from exc
        typer.echo(f"published {sent} care plans -> rpm.care-plans.v1")


@app.command("scenarios")
def list_scenarios() -> None:
    """List the scenarios and their parameters."""
    for name, text in SCENARIO_HELP.items():
        typer.echo(f"{name:20} {text}")
    typer.echo("common keys: patient=<id>|#<index>, patients=<count>, start=<offset, e.g. 30m>, duration=<e.g. 2h>")


def main() -> None:
    app()
