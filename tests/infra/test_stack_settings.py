"""The stack runner's own settings: RPM_STATE_DIR, RPM_PG_BIN and RPM_MOSQUITTO_DYNSEC_PLUGIN."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.stack import ROOT, StackSettings


def test_the_state_directory_defaults_to_rpm_in_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RPM_STATE_DIR", raising=False)
    assert StackSettings(_env_file=None).state == ROOT / ".rpm"
    monkeypatch.setenv("RPM_STATE_DIR", "")  # as .env.example leaves it
    assert StackSettings(_env_file=None).state == ROOT / ".rpm"


def test_the_environment_moves_state_and_binaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RPM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RPM_PG_BIN", "/opt/pg/bin")
    monkeypatch.setenv("RPM_MOSQUITTO_DYNSEC_PLUGIN", "/opt/mosquitto/dynsec.so")
    settings = StackSettings(_env_file=None)
    assert settings.state == tmp_path / "state"
    assert settings.pg_bin == Path("/opt/pg/bin")
    assert settings.mosquitto_dynsec_plugin == Path("/opt/mosquitto/dynsec.so")
