"""The API's Prometheus metrics, read from a real API process (`python -m api` of the test
stack) on its own metrics port: requests counted by route template (never the raw path, so no
patient id becomes a label), the live alert stream's clients going up and down, the time to
acknowledge an alert; and the API port itself serves no /metrics."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import psycopg
import pytest

from infra.stack import Stack
from tests.api.conftest import TestUser
from tests.api.support import PASSWORD, raise_alert
from tests.helpers import wait_for

SUMMARY = "/api/v1/patients/{patient_id}/summary"


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[httpx.Client]:
    stack.start(["api"])
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.ports.api}", timeout=10) as client:
        yield client


def scrape(stack: Stack) -> str:
    return httpx.get(f"http://127.0.0.1:{stack.ports.api_metrics}/metrics", timeout=5).text


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample (0 when absent); labels must match exactly (all of them)."""
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if found == labels:
            return float(m.group(4))
    return 0.0


def token_of(api: httpx.Client, user: TestUser) -> str:
    answer = api.post("/api/v1/auth/token", data={"username": user.username, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def test_requests_are_counted_by_route_template_never_by_raw_path(
    stack: Stack,
    api: httpx.Client,
    make_patient: Callable[[], str],
    make_user: Callable[..., TestUser],
    make_care_team: Callable[..., uuid.UUID],
) -> None:
    patient = make_patient()
    nurse = make_user("clinician")
    make_care_team([nurse], [patient])
    headers = {"Authorization": f"Bearer {token_of(api, nurse)}"}
    ok = {"route": SUMMARY, "method": "GET", "status_class": "2xx"}
    refused = {"route": SUMMARY, "method": "GET", "status_class": "4xx"}
    unmatched = {"route": "unmatched", "method": "GET", "status_class": "4xx"}
    before = scrape(stack)

    assert api.get(f"/api/v1/patients/{patient}/summary", headers=headers).status_code == 200
    assert api.get(f"/api/v1/patients/{patient}/summary").status_code == 401
    stray = f"/no-such-page-{uuid.uuid4().hex}"
    assert api.get(stray).status_code == 404

    after = scrape(stack)
    assert sample(after, "rpm_api_requests_total", **ok) == sample(before, "rpm_api_requests_total", **ok) + 1
    assert sample(after, "rpm_api_requests_total", **refused) == sample(before, "rpm_api_requests_total", **refused) + 1
    assert (
        sample(after, "rpm_api_requests_total", **unmatched)
        == sample(before, "rpm_api_requests_total", **unmatched) + 1
    )
    histogram = sample(after, "rpm_api_request_duration_seconds_count", **ok)
    assert histogram == sample(before, "rpm_api_request_duration_seconds_count", **ok) + 1
    assert patient not in after
    assert stray.strip("/") not in after


def test_api_port_serves_no_metrics(api: httpx.Client) -> None:
    assert api.get("/metrics").status_code == 404
    assert "/metrics" not in api.get("/openapi.json").json()["paths"]


def test_sse_clients_go_up_and_down_with_open_streams(
    stack: Stack, api: httpx.Client, make_user: Callable[..., TestUser]
) -> None:
    nurse = make_user("clinician")
    headers = {"Authorization": f"Bearer {token_of(api, nurse)}", "Accept": "text/event-stream"}

    def clients() -> float:
        return sample(scrape(stack), "rpm_api_sse_clients")

    before = clients()
    with api.stream("GET", "/api/v1/alerts/stream", headers=headers) as first:
        assert first.status_code == 200
        first_lines = first.iter_lines()  # kept: a dropped line iterator closes the stream
        next(first_lines)  # the stream is open once its first line came
        assert wait_for(lambda: clients() == before + 1, timeout=10), "one open stream is not counted"
        with api.stream("GET", "/api/v1/alerts/stream", headers=headers) as second:
            second_lines = second.iter_lines()
            next(second_lines)
            assert wait_for(lambda: clients() == before + 2, timeout=10)
        assert wait_for(lambda: clients() == before + 1, timeout=15), "a closed stream is still counted"
    assert wait_for(lambda: clients() == before, timeout=15), "closed streams are still counted"


def test_time_to_acknowledge_is_observed_by_rule_and_severity(
    stack: Stack,
    api: httpx.Client,
    db: psycopg.Connection,
    make_patient: Callable[[], str],
    make_user: Callable[..., TestUser],
    make_care_team: Callable[..., uuid.UUID],
) -> None:
    patient = make_patient()
    nurse = make_user("clinician")
    make_care_team([nurse], [patient])
    alert_id = raise_alert(db, patient, rule="temp_high", severity="medium", age=timedelta(minutes=10))
    labels = {"rule": "temp_high", "severity": "medium"}
    name = "rpm_api_alert_time_to_acknowledge_seconds"
    before = scrape(stack)
    started = time.time()

    answer = api.post(
        f"/api/v1/alerts/{alert_id}/acknowledge", headers={"Authorization": f"Bearer {token_of(api, nurse)}"}
    )
    assert answer.status_code == 200, answer.text

    after = scrape(stack)
    assert sample(after, f"{name}_count", **labels) == sample(before, f"{name}_count", **labels) + 1
    waited = sample(after, f"{name}_sum", **labels) - sample(before, f"{name}_sum", **labels)
    assert 600 <= waited <= 600 + (time.time() - started) + 5
    # A second acknowledgement is refused (409) and counts nothing.
    again = api.post(
        f"/api/v1/alerts/{alert_id}/acknowledge", headers={"Authorization": f"Bearer {token_of(api, nurse)}"}
    )
    assert again.status_code == 409
    assert sample(scrape(stack), f"{name}_count", **labels) == sample(after, f"{name}_count", **labels)
