"""`.env.example` lists every setting of every process, as the settings classes define them."""

from __future__ import annotations

from pathlib import Path

from infra.envfile import SETTINGS_CLASSES, render

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_is_current() -> None:
    committed = (ROOT / ".env.example").read_text()
    assert committed == render(), "regenerate with: .venv/bin/rpm env-example > .env.example"
    for _, cls in SETTINGS_CLASSES:
        for name in cls.model_fields:
            assert f"RPM_{name.upper()}=" in committed
