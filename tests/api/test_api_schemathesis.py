"""Schemathesis over the whole OpenAPI document of a running API process (uvicorn, real
HTTP, real database and brokers): every operation, as a clinician and as a patient, with
schema-valid and schema-violating inputs, NUL characters allowed in every generated string,
plus one explicit request per operation with a NUL in each of its inputs. Not one answer may
be a 5xx, and the API's log may hold no traceback.

Bounded by examples, not by time, and derandomised, so a run in CI is the run on a laptop.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.schemas import APIOperation

from api.settings import ApiSettings
from tests.api.conftest import TestUser
from tests.api.support import closed_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = 20  # per operation, role and mode


@pytest.fixture
def api_process(settings: ApiSettings, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`python -m api` on a free port, configured like the in-process tests' app (same
    database login and token key); its log file is returned with its URL."""
    port = closed_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RPM_")},
        "PYTHONPATH": str(ROOT),
        "RPM_ENVIRONMENT": "test",
        "RPM_DATABASE_URL": settings.database_url.get_secret_value(),
        "RPM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        # As the stack runs it: the embedded broker has no idempotent producer (ADR 0003); a
        # care-plan change publishes before it answers.
        "RPM_KAFKA_IDEMPOTENT_PRODUCER": "false",
        "RPM_MQTT_HOST": settings.mqtt_host,
        "RPM_MQTT_PORT": str(settings.mqtt_port),
        "RPM_MQTT_ADMIN_PASSWORD": settings.mqtt_admin_password.get_secret_value(),
        "RPM_JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "RPM_API_PORT": str(port),
        # The fuzzer sends hundreds of wrong logins from one address; what this test is about
        # is the answers, not the throttle (tested in test_api_throttling).
        "RPM_LOGIN_MAX_FAILURES_PER_IP": "1000000",
        "RPM_LOGIN_MAX_FAILURES_PER_USER_AND_CLIENT": "1000000",
        "RPM_LOGIN_MAX_FAILURES_PER_USER": "1000000",
    }
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log:
        # cwd: an empty directory, so that no developer's .env is read.
        process = subprocess.Popen([sys.executable, "-m", "api"], cwd=tmp_path, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the API did not start: " + log_path.read_text()
            time.sleep(0.1)
        yield url, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _nul_request(operation: APIOperation, patient_id: str) -> tuple[str, str, dict[str, Any]]:
    """Method, path and httpx arguments with a NUL in every input of the operation."""
    definition = operation.definition.raw
    path = operation.path
    query: dict[str, str] = {}
    for parameter in definition.get("parameters", []):
        if parameter["in"] == "path":
            path = path.replace("{" + parameter["name"] + "}", f"{patient_id}%00")
        elif parameter["in"] == "query":
            query[parameter["name"]] = "a\x00b"
    kwargs: dict[str, Any] = {"params": query}
    content = definition.get("requestBody", {}).get("content", {})
    if "application/x-www-form-urlencoded" in content:
        kwargs["data"] = {
            "username": "a\x00b",
            "password": "c\x00d",
            "grant_type": "refresh_token",
            "refresh_token": "\x00",
        }
    elif "application/json" in content:
        kwargs["json"] = {"current_password": "a\x00b", "new_password": "a long new passphrase\x00", "level": "A\x00"}
    return operation.method.upper(), path, kwargs


@pytest.mark.parametrize("role", ["clinician", "patient"])
def test_no_answer_is_a_server_error(
    api_process: tuple[str, Path],
    role: str,
    make_patient: Callable[[], str],
    make_user: Callable[..., TestUser],
    make_care_team: Callable[..., Any],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    url, log_path = api_process
    patient_id = make_patient()
    clinician = make_user("clinician")
    make_care_team([clinician], [patient_id])
    user = clinician if role == "clinician" else make_user("patient", patient_id=patient_id)

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    schema.config.generation.update(allow_x00=True, max_examples=EXAMPLES)
    statuses: Counter[tuple[str, int]] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {
        "POST /api/v1/auth/token",
        "POST /api/v1/auth/refresh",
        "POST /api/v1/auth/logout",
        "POST /api/v1/me/password",
        "GET /api/v1/me",
        "GET /api/v1/patients/{patient_id}/observations",
        "GET /readyz",
        "GET /api/v1/patients/{patient_id}/care-plan",
        "PUT /api/v1/patients/{patient_id}/care-plan",
        "POST /api/v1/patients/{patient_id}/care-plan/what-if",
        "POST /api/v1/patients/{patient_id}/break-glass",
        "GET /api/v1/me/break-glass",
        "POST /api/v1/devices",
        "GET /api/v1/devices",
        "POST /api/v1/devices/{device_id}/revoke",
        "POST /api/v1/devices/{device_id}/bind",
        "GET /api/v1/audit-events",
        "GET /api/v1/alerts",
        "GET /api/v1/alerts/precision",
        "GET /api/v1/alerts/stream",
        "GET /api/v1/alerts/{alert_id}",
        "POST /api/v1/alerts/{alert_id}/acknowledge",
        "POST /api/v1/alerts/{alert_id}/assign",
        "POST /api/v1/alerts/{alert_id}/snooze",
        "POST /api/v1/alerts/{alert_id}/resolve",
        "POST /api/v1/alerts/{alert_id}/notes",
        "GET /api/v1/patients",
        "GET /api/v1/patients/{patient_id}/summary",
        "GET /api/v1/patients/{patient_id}/observations/rollups",
    }

    def fuzz(strategy: Any, send: Callable[[schemathesis.Case], Any]) -> None:
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,  # the same examples on every run
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def probe(case: schemathesis.Case) -> None:
            # A fresh session for each request: a generated logout must not end the others'.
            response = send(case)
            statuses[(case.operation.label, response.status_code)] += 1
            assert response.status_code < 500, (
                f"{case.operation.label} answered {response.status_code}: {response.text[:500]}"
            )

        probe()

    with httpx.Client(base_url=url, timeout=30) as http:
        for operation in operations:
            pinned = {"patient_id": patient_id} if "{patient_id}" in operation.path else None
            raw = operation.definition.raw
            has_inputs = bool(raw.get("parameters") or raw.get("requestBody"))
            strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
            if has_inputs:  # else there is nothing to violate
                strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
            if pinned:  # the patient the user may see, so that reads get past access control
                strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=pinned))
                if operation.method.upper() == "GET":  # and a query that reads (default range)
                    strategies.append(
                        operation.as_strategy(
                            GenerationMode.POSITIVE, path_parameters=pinned, query={"metric": "heart_rate"}
                        )
                    )
            for strategy in strategies:
                fuzz(strategy, lambda case: case.call(base_url=url, headers=auth_headers(user), timeout=30))

            if has_inputs:
                method, path, kwargs = _nul_request(operation, patient_id)
                response = http.request(method, path, headers=auth_headers(user), **kwargs)
                statuses[(operation.label + " with NUL", response.status_code)] += 1
                assert response.status_code == 422, f"{operation.label} with NUL: {response.text[:500]}"

    assert statuses, "nothing was sent"
    assert not [key for key in statuses if key[1] >= 500]
    # Every operation got answers beyond refusals of the input (the fuzzing reached it).
    assert {label for label, status in statuses if status < 300} >= {"GET /api/v1/me", "GET /readyz"}
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log
    assert "unhandled error" not in log
