"""The multi-host deployment (infra/compose, ADR 0031): the compose file is valid for Debian's
`docker-compose` (no engine needed for `config`), every file a service mounts is in the
repository, the platform refuses the committed placeholder secrets, Prometheus scrapes every
platform process, Mosquitto keeps the local stack's settings, Kafka's topics are the code's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from alerts.settings import AlertsSettings
from api.settings import ApiSettings
from core.wire import ALL_TOPICS
from infra.deploy import DeploySettings
from ingest.settings import IngestSettings
from streams.app import create_app
from streams.changelogs import changelog_topics
from streams.settings import StreamsSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "compose"
SETTINGS: dict[str, type[BaseSettings]] = {
    "ingest": IngestSettings,
    "streams": StreamsSettings,
    "alerts": AlertsSettings,
    "api": ApiSettings,
    "infra.deploy": DeploySettings,
}
METRICS_PORT = {"ingest": "ingest_metrics_port", "streams": "streams_metrics_port", "alerts": "alerts_metrics_port",
                "api": "api_metrics_port"}  # fmt: skip


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    exe = shutil.which("docker-compose")
    assert exe is not None, "Debian's docker-compose is missing: run infra/setup.sh"
    out = subprocess.run(
        [exe, "-f", str(COMPOSE / "compose.yaml"), "config"], capture_output=True, text=True, check=False, timeout=120
    )
    assert out.returncode == 0, out.stderr
    loaded: dict[str, Any] = yaml.safe_load(out.stdout)
    return loaded


def _module(service: dict[str, Any]) -> str | None:
    command = service.get("command") or []
    return command[2] if command[:2] == ["python", "-m"] else None


def _platform(config: dict[str, Any]) -> dict[str, tuple[str, dict[str, str]]]:
    """Service name -> (the module it runs, its environment) for our processes."""
    out = {}
    for name, service in config["services"].items():
        module = _module(service)
        if module is not None:
            out[name] = (module, {k: str(v) for k, v in (service.get("environment") or {}).items()})
    return out


def test_the_deployment_has_every_component_and_several_workers(config: dict[str, Any]) -> None:
    services = config["services"]
    images = {name: str(s.get("image", "")) for name, s in services.items()}
    brokers = [n for n, s in services.items() if images[n].startswith("apache/kafka") and "KAFKA_NODE_ID" in
               (s.get("environment") or {})]  # fmt: skip
    assert len(brokers) == 3
    assert len({services[b]["environment"]["KAFKA_NODE_ID"] for b in brokers}) == 3
    assert services[brokers[0]]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"].count("@") == 3
    assert any(i.startswith("timescale/timescaledb") for i in images.values())
    assert any(i.startswith("eclipse-mosquitto") for i in images.values())
    assert any(i.startswith("grafana/") for i in images.values())
    assert any(i.startswith("prom/prometheus") for i in images.values())
    modules = [module for module, _ in _platform(config).values()]
    assert modules.count("ingest") >= 2
    assert modules.count("streams") >= 2
    assert {"alerts", "api", "infra.deploy"} <= set(modules)
    client_ids = [env["RPM_MQTT_CLIENT_ID"] for module, env in _platform(config).values() if module == "ingest"]
    assert len(set(client_ids)) == len(client_ids), "each bridge keeps its own MQTT session"
    assert (ROOT / services["api"]["build"]["dockerfile"]).is_file()


def test_every_file_a_service_mounts_is_in_the_repository(config: dict[str, Any]) -> None:
    mounted = []
    for name, service in config["services"].items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if not source.startswith("/"):
                continue  # a named volume
            path = Path(source)
            assert path.is_relative_to(ROOT), f"{name} mounts {source}, outside the repository"
            assert path.exists(), f"{name} mounts {path.relative_to(ROOT)}, which is not in the repository"
            mounted.append(path.relative_to(ROOT).as_posix())
    # Grafana's provisioning is the generated one, not a copy.
    assert "infra/grafana/provisioning" in mounted
    assert "infra/compose/prometheus/prometheus.yml" in mounted
    assert "infra/compose/mosquitto/mosquitto.conf" in mounted


def _load(cls: type[BaseSettings], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> BaseSettings:
    with monkeypatch.context() as m:
        for key in [k for k in os.environ if k.startswith("RPM_")]:
            m.delenv(key)
        for key, value in env.items():
            m.setenv(key, value)
        return cls(_env_file=None)


def test_the_platform_refuses_the_committed_placeholders(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, (module, env) in _platform(config).items():
        assert env["RPM_ENVIRONMENT"] == "production", name
        assert any("change-me" in v for v in env.values()), f"{name}: no placeholder secret, a real one committed?"
        # Refused as a placeholder (the API's token key, as too short, before that).
        with pytest.raises(ValidationError, match=r"placeholder|RPM_JWT_SECRET must be at least"):
            _load(SETTINGS[module], env, monkeypatch)
        # With the placeholders replaced, the same files make valid settings.
        real = {k: v.replace("change-me", "s3cret-" + "x" * 40) for k, v in env.items()}
        settings = _load(SETTINGS[module], real, monkeypatch)
        assert getattr(settings, "environment") == "production"  # noqa: B009 - any settings class


def test_prometheus_scrapes_every_platform_process(config: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "Debian's prometheus (promtool) is missing: run infra/setup.sh"
    path = COMPOSE / "prometheus" / "prometheus.yml"
    check = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    scrape = yaml.safe_load(path.read_text())
    targets = {t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    for name, (module, env) in _platform(config).items():
        if module not in METRICS_PORT:
            continue  # the one-off set-up
        real = {k: v.replace("change-me", "s3cret-" + "x" * 40) for k, v in env.items()}
        settings = _load(SETTINGS[module], real, monkeypatch)
        assert getattr(settings, f"{module}_metrics_host") == "0.0.0.0", name  # noqa: S104 - reached by Prometheus
        assert f"{name}:{getattr(settings, METRICS_PORT[module])}" in targets, name


def test_mosquitto_keeps_the_local_stacks_settings_and_adds_tls() -> None:
    def lines(path: Path) -> set[str]:
        return {ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")}

    template = {ln for ln in lines(ROOT / "infra" / "mosquitto" / "mosquitto.conf.template") if "{" not in ln}
    compose = lines(COMPOSE / "mosquitto" / "mosquitto.conf")
    assert template - compose == set()
    for directive in ("listener 8883", "certfile /mosquitto/certs/mqtt.crt", "keyfile /mosquitto/certs/mqtt.key",
                      "tls_version tlsv1.2", "allow_anonymous false"):  # fmt: skip
        assert directive in compose


def test_kafka_topics_are_the_codes_replicated_three_times(config: dict[str, Any]) -> None:
    script = (COMPOSE / "kafka" / "create-topics.sh").read_text()
    created = {
        m.group(1): (int(m.group(2)), "cleanup.policy=compact" in (m.group(3) or ""))
        for m in re.finditer(r"^create (\S+) (\d+)(.*)$", script, re.MULTILINE)
    }
    streams_env = next(env for module, env in _platform(config).values() if module == "streams")
    app = create_app(StreamsSettings(_env_file=None, streams_app_id=streams_env["RPM_STREAMS_APP_ID"]))
    wanted = {t.name: (t.partitions, t.compacted) for t in ALL_TOPICS}
    wanted |= {name: (partitions, True) for name, partitions in changelog_topics(app).items()}
    assert created == wanted
    assert "--replication-factor 3" in script
    assert "min.insync.replicas=2" in script
    kafka_env = (COMPOSE / "kafka" / "kafka.env").read_text()
    assert "KAFKA_AUTO_CREATE_TOPICS_ENABLE=false" in kafka_env
    assert "KAFKA_DEFAULT_REPLICATION_FACTOR=3" in kafka_env


def test_grafana_gets_every_variable_its_provisioning_reads(config: dict[str, Any]) -> None:
    provisioning = ROOT / "infra" / "grafana" / "provisioning"
    wanted = {
        m.group(1)
        for path in provisioning.rglob("*.yaml")
        for m in re.finditer(r"\$\{([A-Z][A-Z0-9_]*)\}", path.read_text())
    }
    assert wanted, "the provisioning reads no variables: has its format changed?"
    grafana = next(s for s in config["services"].values() if str(s.get("image", "")).startswith("grafana/"))
    assert wanted <= set(grafana.get("environment") or {})
