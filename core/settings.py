"""Typed settings shared by the processes (pydantic-settings, prefix `RPM_`).

Each process composes the groups it needs into its own settings class. Secrets are
`SecretStr`; placeholder secrets are refused outside development.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset({"", "change-me", "changeme", "secret", "password"})

Environment = Literal["development", "test", "production"]


def _is_placeholder(value: str) -> bool:
    """A placeholder secret, or a URL (a database's) whose password is one."""
    if value in PLACEHOLDER_SECRETS:
        return True
    if "://" not in value:
        return False
    try:
        password = urlsplit(value).password
    except ValueError:
        return False
    return password is not None and unquote(password) in PLACEHOLDER_SECRETS


class BaseRpmSettings(BaseSettings):
    """Settings every process has."""

    model_config = SettingsConfigDict(env_prefix="RPM_", env_file=".env", extra="ignore")

    environment: Environment = Field(
        "development", description="development, test or production; only development accepts placeholder secrets"
    )
    log_level: str = Field("INFO", description="Python log level name")
    log_json: bool = Field(False, description="Emit JSON log lines (production) instead of console lines")

    def _secrets(self) -> dict[str, SecretStr]:
        return {name: value for name in type(self).model_fields if isinstance(value := getattr(self, name), SecretStr)}

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> BaseRpmSettings:
        # Development (the local stack, a laptop) may run on the committed defaults; test and
        # production environments must be given real secrets (CONVENTIONS: "refused outside
        # development").
        if self.environment != "development":
            weak = [n for n, v in self._secrets().items() if _is_placeholder(v.get_secret_value())]
            if weak:
                raise ValueError(
                    f"placeholder secrets are not allowed outside development "
                    f"(environment {self.environment}): {', '.join(weak)}"
                )
        return self


class DatabaseSettings(BaseRpmSettings):
    database_url: SecretStr = Field(
        SecretStr("postgresql://rpm_PROCESS_login:change-me@127.0.0.1:15433/rpm"),
        description="libpq URL of this process's own database login (rpm_ingest_login, rpm_streams_login or "
        "rpm_api_login; each granted only what the process uses, ADR 0016; migrations run as the database owner)",
    )
    db_pool_min: int = Field(1, description="Minimum connections in the pool")
    db_pool_max: int = Field(8, description="Maximum connections in the pool")


class KafkaSettings(BaseRpmSettings):
    kafka_bootstrap: str = Field("127.0.0.1:19092", description="Kafka bootstrap servers, comma separated")
    kafka_idempotent_producer: bool = Field(
        True,
        description="Use the idempotent producer (InitProducerId). The embedded Tansu broker lacks it: "
        "the local stack sets false and duplicates are absorbed by idempotent writes (ADR 0003)",
    )


class MqttSettings(BaseRpmSettings):
    mqtt_host: str = Field("127.0.0.1", description="MQTT broker host")
    mqtt_port: int = Field(18830, description="MQTT broker port")
    mqtt_tls: bool = Field(False, description="Connect to the MQTT broker with TLS")
    mqtt_ca_file: str | None = Field(None, description="CA bundle for MQTT TLS")


class BrokerAdminSettings(MqttSettings):
    mqtt_admin_username: str = Field("rpm-admin", description="Dynamic-security admin of the MQTT broker")
    mqtt_admin_password: SecretStr = Field(SecretStr("change-me"), description="Its password")
