"""Where the local stack lives and what it hands its processes: the state directory, the
ports, the generated credentials, and the RPM_ environment each platform process starts with."""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Final

from core.clients.broker_admin import BrokerAdmin

ROOT: Final = Path(__file__).resolve().parent.parent.parent
PLATFORM_COMPONENTS: Final = ("ingest", "streams", "alerts", "api")
SERVICE_COMPONENTS: Final = ("mosquitto", "kafka", "postgres", "smtp", "prometheus")


@dataclass
class Ports:
    mqtt: int = 18830
    kafka: int = 19092
    postgres: int = 15433
    api: int = 18000
    ingest_metrics: int = 19101
    streams_metrics: int = 19102
    alerts_metrics: int = 19103
    smtp: int = 18025  # the local SMTP server (infra/smtp.py), alert e-mail lands in <state>/mail
    api_metrics: int = 19104  # the API's /metrics, on its own port like every process's (ADR 0030)
    prometheus: int = 19090  # the local Prometheus (infra/prometheus), scraping every process's /metrics

    @classmethod
    def free(cls) -> Ports:
        """Free loopback ports chosen by the kernel (for tests)."""
        socks = []
        try:
            for _ in range(len(fields(cls))):
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                socks.append(s)
            return cls(*(s.getsockname()[1] for s in socks))
        finally:
            for s in socks:
                s.close()


# The database's group role of each process (core/migrations/0005_process_roles.sql). Each
# process logs in as `<group>_login`, a member of its group, with a password of its own.
DB_ROLES: Final = {
    "api": "rpm_api",
    "ingest": "rpm_ingest",
    "streams": "rpm_streams",
    "alerts": "rpm_alerts",
    "reporting": "rpm_reporting",
}


def _db_role_passwords() -> dict[str, str]:
    return {process: secrets.token_urlsafe(18) for process in DB_ROLES}


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)


@dataclass
class Secrets:
    pg_superuser_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    mqtt_admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    mqtt_ingest_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    # process (a key of DB_ROLES) -> password of its database login
    pg_role_passwords: dict[str, str] = field(default_factory=_db_role_passwords)

    @classmethod
    def load_or_create(cls, path: Path) -> Secrets:
        if path.exists():
            stored = json.loads(path.read_text())
            loaded = cls(**{k: v for k, v in stored.items() if k in cls.__dataclass_fields__})
            # A file from before a secret existed (per-process database logins) gets it now;
            # keys we no longer use (pg_app_password) stay for an older checkout.
            kept = loaded.pg_role_passwords
            loaded.pg_role_passwords = {p: kept.get(p) or secrets.token_urlsafe(18) for p in DB_ROLES}
            merged = {**stored, **asdict(loaded)}
            if merged != stored:
                _write_private(path, json.dumps(merged, indent=2))
            return loaded
        created = cls()
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, json.dumps(asdict(created), indent=2))
        return created


class StackConfig:
    """One local stack's state directory, ports and credentials, and the settings derived from them."""

    def __init__(self, state: Path, ports: Ports | None = None, *, quiet: bool = False) -> None:
        self.state = state.resolve()
        self.logs = self.state / "logs"
        self.run_dir = self.state / "run"
        self.quiet = quiet
        ports_file = self.state / "ports.json"
        if ports is None:
            ports = Ports(**json.loads(ports_file.read_text())) if ports_file.exists() else Ports()
        self.ports = ports
        self.state.mkdir(parents=True, exist_ok=True)
        self.state.chmod(0o755)
        self.logs.mkdir(exist_ok=True)
        self.run_dir.mkdir(exist_ok=True)
        ports_file.write_text(json.dumps(asdict(self.ports)))
        self.secrets = Secrets.load_or_create(self.state / "secrets.json")

    @property
    def admin_db_url(self) -> str:
        return f"postgresql://rpm_super:{self.secrets.pg_superuser_password}@127.0.0.1:{self.ports.postgres}/rpm"

    def db_url(self, process: str) -> str:
        """URL of a process's own database login (api, ingest, streams, alerts, reporting)."""
        login = f"{DB_ROLES[process]}_login"
        password = self.secrets.pg_role_passwords[process]
        return f"postgresql://{login}:{password}@127.0.0.1:{self.ports.postgres}/rpm"

    @property
    def app_db_url(self) -> str:
        """The API's database URL (what the API tests connect as)."""
        return self.db_url("api")

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports.kafka}"

    def env(self, process: str | None = None) -> dict[str, str]:
        """Environment of a platform process (every RPM_ setting it needs); the database URL is
        the process's own login, and absent for a process without one (the simulator)."""
        database = {"RPM_DATABASE_URL": self.db_url(process)} if process in DB_ROLES else {}
        return {
            **database,
            "RPM_ENVIRONMENT": "development",
            "RPM_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "RPM_KAFKA_IDEMPOTENT_PRODUCER": "false",
            "RPM_MQTT_HOST": "127.0.0.1",
            "RPM_MQTT_PORT": str(self.ports.mqtt),
            "RPM_MQTT_ADMIN_USERNAME": "rpm-admin",
            "RPM_MQTT_ADMIN_PASSWORD": self.secrets.mqtt_admin_password,
            "RPM_MQTT_USERNAME": "rpm-ingest",
            "RPM_MQTT_PASSWORD": self.secrets.mqtt_ingest_password,
            "RPM_JWT_SECRET": self.secrets.jwt_secret,
            "RPM_API_PORT": str(self.ports.api),
            "RPM_INGEST_METRICS_PORT": str(self.ports.ingest_metrics),
            "RPM_STREAMS_METRICS_PORT": str(self.ports.streams_metrics),
            "RPM_STREAMS_DATA_DIR": str(self.state / "streams"),
            "RPM_ALERTS_METRICS_PORT": str(self.ports.alerts_metrics),
            "RPM_API_METRICS_PORT": str(self.ports.api_metrics),
            **(self.notify_env() if process == "alerts" else {}),
        }

    @property
    def maildir(self) -> Path:
        """Where the local SMTP server writes every message it receives (one file each in new/)."""
        return self.state / "mail"

    def notify_env(self) -> dict[str, str]:
        """The alert service's notification settings on the local stack: e-mail to the stack's
        own SMTP server, links to the stack's API, and webhooks allowed to reach loopback
        (127.0.0.1 only, over http): an explicit development setting, refused in production."""
        return {
            "RPM_SMTP_HOST": "127.0.0.1",
            "RPM_SMTP_PORT": str(self.ports.smtp),
            "RPM_SMTP_SECURITY": "none",
            "RPM_NOTIFY_LINK_BASE": f"http://127.0.0.1:{self.ports.api}",
            "RPM_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
            "RPM_WEBHOOK_ALLOW_LOOPBACK": "true",
            "RPM_WEBHOOK_REQUIRE_HTTPS": "false",
        }

    def broker_admin(self) -> BrokerAdmin:
        return BrokerAdmin("127.0.0.1", self.ports.mqtt, "rpm-admin", self.secrets.mqtt_admin_password)

    def metrics_ports(self) -> dict[str, int]:
        """Each platform process's /metrics port (Prometheus's scrape targets)."""
        return {
            "ingest": self.ports.ingest_metrics,
            "streams": self.ports.streams_metrics,
            "alerts": self.ports.alerts_metrics,
            "api": self.ports.api_metrics,
        }

    def _db_url(self, database: str) -> str:
        return f"postgresql://rpm_super:{self.secrets.pg_superuser_password}@127.0.0.1:{self.ports.postgres}/{database}"
