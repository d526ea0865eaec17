"""`rpm devices provision|revoke` against the real stack: credentials work at once,
a revoked device is refused at once, bad requests are refused with a clear message."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from typer.testing import CliRunner

from infra.cli import app
from infra.stack import Stack
from tests.helpers import Device, create_patient, unique


@pytest.fixture
def runner(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("RPM_STATE_DIR", str(stack.state))
    return CliRunner()


def test_provision_then_revoke(runner: CliRunner, stack: Stack, db: psycopg.Connection) -> None:
    patient = create_patient(db)
    device_id = unique("cli-dev")
    result = runner.invoke(app, ["devices", "provision", device_id, "--patient", patient, "--class", "scale"])
    assert result.exit_code == 0, result.output
    creds = json.loads(result.output)
    assert creds["device_id"] == device_id
    binding = db.execute(
        "SELECT patient_id, valid_to FROM device_bindings WHERE device_id = %s", (device_id,)
    ).fetchone()
    assert binding == (patient, None)
    device = Device(stack, creds["username"], creds["password"])
    assert not device.connect().is_failure
    device.close()

    result = runner.invoke(app, ["devices", "revoke", device_id])
    assert result.exit_code == 0, result.output
    again = Device(stack, creds["username"], creds["password"])
    assert again.connect().is_failure
    again.close()
    closed = db.execute("SELECT valid_to FROM device_bindings WHERE device_id = %s", (device_id,)).fetchone()
    assert closed is not None
    assert closed[0] is not None


def test_binding_with_a_validity_period(runner: CliRunner, db: psycopg.Connection) -> None:
    patient = create_patient(db)
    device_id = unique("cli-dev")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=90)
    result = runner.invoke(
        app,
        ["devices", "provision", device_id, "--patient", patient, "--from", "2026-01-01", "--until", "2026-04-01"],
    )
    assert result.exit_code == 0, result.output
    row = db.execute("SELECT valid_from, valid_to FROM device_bindings WHERE device_id = %s", (device_id,)).fetchone()
    assert row == (start, end)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--patient", "no-such-patient"], "unknown patient"),
        (["--class", "toaster"], "unknown device class"),
        (["--from", "2026-05-01", "--until", "2026-04-01"], "must end after it starts"),
    ],
)
def test_bad_requests_are_refused_clearly(
    runner: CliRunner, db: psycopg.Connection, args: list[str], message: str
) -> None:
    patient = create_patient(db)
    argv = ["devices", "provision", unique("cli-dev"), "--patient", patient, *args]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    assert message in result.output
