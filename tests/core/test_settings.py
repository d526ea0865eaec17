"""The shared settings: placeholder secrets are accepted in development only."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.settings import BrokerAdminSettings, DatabaseSettings


@pytest.mark.parametrize("environment", ["test", "production"])
def test_placeholder_secrets_are_refused_outside_development(environment: str) -> None:
    with pytest.raises(ValidationError, match=r"placeholder secrets .* \(environment " + environment + r"\)"):
        BrokerAdminSettings(_env_file=None, environment=environment)
    with pytest.raises(ValidationError, match="database_url"):
        DatabaseSettings(_env_file=None, environment=environment)
    real = BrokerAdminSettings(_env_file=None, environment=environment, mqtt_admin_password="a-real-one")
    assert real.mqtt_admin_password.get_secret_value() == "a-real-one"


def test_development_runs_on_the_committed_defaults() -> None:
    settings = DatabaseSettings(_env_file=None, environment="development")
    assert "change-me" in settings.database_url.get_secret_value()
