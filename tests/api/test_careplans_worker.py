"""A care plan changed through the API reaches the stream worker: the record the API publishes
on `rpm.care-plans.v1` is applied by the worker's care-plan agent, and the worker's detections
for the patient's next readings follow the new limits (the ids the pure detectors give)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from api.app import create_app
from core.careplan import decode_care_plan
from core.wire import Reading
from infra.stack import Stack
from tests.streams.support import DetectionLog, batch, ground_truth, metric_samples, minutes, send_batches

STRICT = {
    "limits": [
        {
            "rule": "spo2_low",
            "metric": "spo2",
            "direction": "low",
            "raise_at": 94,
            "clear_at": 96,
            "repeat_count": 2,
        }
    ]
}


@pytest.fixture
def worker(stack: Stack) -> Stack:
    stack.start(["streams"])
    return stack


def applied(worker: Stack) -> float:
    return metric_samples(worker.ports.streams_metrics, "rpm_streams_care_plans_total").get('{outcome="applied"}', 0)


def test_a_plan_changed_through_the_api_sets_the_workers_limits(
    worker: Stack,
    settings_for: Any,
    serve: Any,
    make_patient: Callable[[], str],
    make_user: Any,
    make_care_team: Any,
    auth_headers: Callable[..., dict[str, str]],
) -> None:
    patient = make_patient()
    clinician = make_user("clinician")
    make_care_team([clinician], [patient])
    before = applied(worker)

    async def change() -> httpx.Response:
        async with serve(create_app(settings_for(kafka_idempotent_producer=False))) as client:
            response: httpx.Response = await client.put(
                f"/api/v1/patients/{patient}/care-plan",
                json={"plan": STRICT, "version": 0},
                headers=auth_headers(clinician),
            )
            return response

    response = asyncio.run(change())
    assert response.status_code == 200, response.text
    plan = decode_care_plan(json.dumps(response.json()["plan"]))
    deadline = time.monotonic() + 30
    while applied(worker) <= before:
        assert time.monotonic() < deadline, "the worker did not apply the plan"
        time.sleep(0.2)

    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    records = [[Reading("spo2", 93.0, minutes(t0, i))] for i in range(3)]
    assert "spo2_low" not in [rule for _, rule, _ in ground_truth(patient, records)]  # not by the default plan
    expected = ground_truth(patient, records, plan)
    assert [rule for _, rule, _ in expected].count("spo2_low") == 1
    log = DetectionLog(worker.kafka_bootstrap, {patient})
    send_batches(worker.kafka_bootstrap, [batch(patient, rs, seq=i) for i, rs in enumerate(records)])
    got = log.wait_for(lambda rs: len(rs) >= len(expected), timeout=60)
    assert sorted(r.detection_id for r in got) == sorted(i for i, _, _ in expected)
