"""Settings of the API process (pydantic-settings, prefix `RPM_`).

Composes the shared database, Kafka and MQTT groups (readiness checks; the MQTT broker's
dynamic-security admin for device provisioning, api/devices) with what only the API needs:
token signing, session limits, login throttling, the reverse proxies it may believe about the
client's address and the bounds of the care-plan what-if.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from functools import cached_property
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator

from core.settings import PLACEHOLDER_SECRETS, BrokerAdminSettings, DatabaseSettings, KafkaSettings

# RFC 7518 §3.2: an HS256 key must be at least as long as the hash output (32 bytes);
# PyJWT warns about shorter keys, and a warning is a bug here.
MIN_JWT_SECRET_BYTES = 32


def _seconds_or_duration(value: Any) -> Any:
    # pydantic reads "PT15M" but not a bare "900" from the environment; accept both.
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
        return float(value)
    return value


Duration = Annotated[timedelta, BeforeValidator(_seconds_or_duration)]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


class ApiSettings(DatabaseSettings, KafkaSettings, BrokerAdminSettings):
    """Everything `python -m api` reads from the environment."""

    jwt_secret: SecretStr = Field(
        description="HS256 signing key of the access tokens, at least 32 bytes "
        "(generate with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)",
    )
    jwt_issuer: str = Field("rpm-api", description="`iss` and `aud` claim of the tokens this API issues and accepts")
    api_host: str = Field("127.0.0.1", description="Interface uvicorn binds to")
    api_port: int = Field(18000, ge=1, le=65535, description="TCP port uvicorn listens on")
    api_metrics_port: int = Field(
        19104, ge=1, le=65535, description="Port of the API's Prometheus metrics endpoint (not the API's own port)"
    )
    api_metrics_host: str = Field("127.0.0.1", description="Address of the API's Prometheus metrics endpoint")
    api_trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or CIDR networks of reverse proxies whose X-Forwarded-For "
        "and X-Forwarded-Proto are believed; empty: none, the TCP peer is the client",
    )
    access_token_ttl: Duration = Field(
        timedelta(minutes=15),
        description="Lifetime of an access token (seconds or ISO 8601 duration)",
    )
    session_idle_timeout: Duration = Field(
        timedelta(minutes=30),
        description="A session ends when no token was refreshed for this long (>= access_token_ttl)",
    )
    session_absolute_timeout: Duration = Field(
        timedelta(hours=12),
        description="A session ends this long after the password login, whatever the activity",
    )
    login_failure_window: Duration = Field(
        timedelta(minutes=5), description="Sliding window over which failed logins are counted"
    )
    login_max_failures_per_user_and_client: int = Field(
        5,
        ge=1,
        description="Failed logins of one username from one client address within the window before "
        "that pair has to wait (429, the wait doubling with each further failure)",
    )
    login_max_failures_per_ip: int = Field(
        20,
        ge=1,
        description="Failed logins from one client address within the window before it has to wait (429); "
        "higher than per username because many users may share an address (NAT)",
    )
    login_max_failures_per_user: int = Field(
        20,
        ge=1,
        description="Failed logins of one username from all addresses within the window before clients "
        "where that user never logged in have to wait (429); clients they logged in from are exempt",
    )
    login_max_delay: Duration = Field(
        timedelta(minutes=5),
        description="Longest wait the progressive login delay imposes (seconds or ISO 8601 duration)",
    )
    password_hash_concurrency: int = Field(
        4,
        ge=1,
        description="Password hashes computed at once (argon2: CPU and 64 MiB each); more logins wait their turn",
    )
    db_acquire_timeout: float = Field(
        5.0,
        gt=0,
        description="Seconds a request waits for a database connection before answering 503",
    )
    broker_admin_timeout: float = Field(
        5.0, gt=0, description="Seconds the MQTT broker may take to answer a device provisioning command (then 503)"
    )
    what_if_max_readings: int = Field(
        200_000,
        ge=1,
        description="Most stored readings a care-plan what-if replays; a longer history answers 422 (ask fewer days)",
    )
    what_if_timeout: float = Field(
        20.0, gt=0, description="Seconds a care-plan what-if may replay before it answers 503"
    )
    what_if_concurrency: int = Field(
        1, ge=1, description="What-if replays run at once (CPU-bound, in worker threads); more wait their turn"
    )
    readiness_timeout: float = Field(
        2.0,
        gt=0,
        description="Seconds each /readyz dependency check may take before it counts as failed",
    )

    @field_validator("api_trusted_proxies")
    @classmethod
    def _proxies_parse(cls, value: str) -> str:
        for item in _split(value):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"RPM_API_TRUSTED_PROXIES: {item!r} is not an address or network") from exc
        return value

    @cached_property
    def trusted_proxy_networks(self) -> tuple[IPNetwork, ...]:
        """The parsed `api_trusted_proxies`."""
        return tuple(ipaddress.ip_network(item, strict=False) for item in _split(self.api_trusted_proxies))

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < MIN_JWT_SECRET_BYTES:
            raise ValueError(f"RPM_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes")
        return value

    @model_validator(mode="after")
    def _session_limits_consistent(self) -> ApiSettings:
        if self.access_token_ttl <= timedelta(0):
            raise ValueError("access_token_ttl must be positive")
        if self.session_idle_timeout < self.access_token_ttl:
            raise ValueError("session_idle_timeout must be at least access_token_ttl")
        if self.session_absolute_timeout < self.session_idle_timeout:
            raise ValueError("session_absolute_timeout must be at least session_idle_timeout")
        if self.login_max_delay < timedelta(seconds=1):
            raise ValueError("login_max_delay must be at least 1 s (0 would switch the login delay off)")
        return self

    @model_validator(mode="after")
    def _no_placeholder_database_password(self) -> ApiSettings:
        # The shared check compares whole secrets; the database secret is a URL whose
        # password part may still be the development placeholder.
        if self.environment == "production":
            password = urlsplit(self.database_url.get_secret_value()).password or ""
            if password in PLACEHOLDER_SECRETS:
                raise ValueError("placeholder database password is not allowed in production")
        return self
