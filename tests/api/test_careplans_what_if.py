"""The care-plan what-if: stored readings replayed through the stream worker's detectors
(`core.detectors`) with the current and a proposed plan; the numbers equal what the
detector functions give for the same readings, and nothing is stored."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import psycopg
import pytest

from api.app import create_app
from core.careplan import decode_care_plan, default_care_plan
from core.detectors.model import DetectionKind
from core.detectors.service import DetectorState, detect_readings
from core.wire import Reading
from tests.api.support import assert_problem

pytestmark = pytest.mark.anyio

LOW_85 = {
    "limits": [
        {
            "rule": "spo2_low",
            "metric": "spo2",
            "direction": "low",
            "raise_at": 85,
            "clear_at": 88,
            "sustained_s": 600,
            "clear_sustained_s": 600,
            "severity": "high",
        }
    ]
}


@pytest.fixture
async def client(anyio_backend: str, settings_for: Any, serve: Any) -> AsyncIterator[httpx.AsyncClient]:
    # As the stack runs it: the embedded broker has no idempotent producer (ADR 0003).
    async with serve(create_app(settings_for(kafka_idempotent_producer=False))) as http:
        yield http


def url(patient_id: str) -> str:
    return f"/api/v1/patients/{patient_id}/care-plan/what-if"


def episodes(start: datetime) -> list[tuple[datetime, float]]:
    """SpO2 once a minute over six hours: three 30-minute dips to 87-88 % (below 90, above 85)
    and one to 82 % (below both), with normal 96 % in between."""
    points: list[tuple[datetime, float]] = []
    for minute in range(6 * 60):
        hour, within = divmod(minute, 60)
        value = 96.0
        if within < 30 and hour in (0, 2, 3):
            value = 87.0 + (minute % 2)
        elif within < 30 and hour == 4:
            value = 82.0
        points.append((start + timedelta(minutes=minute), value))
    return points


def raises(patient_id: str, plan: Any, readings: list[Reading]) -> list[tuple[str, datetime]]:
    """What the worker's detectors raise for these readings in one pass."""
    _, found = detect_readings(patient_id, plan, DetectorState(), readings)
    return [(str(d.rule), d.detected_at) for d in found if d.kind is DetectionKind.RAISE]


async def test_a_lower_spo2_limit_raises_fewer_alerts_exactly_as_the_detectors_do(
    client: httpx.AsyncClient,
    make_patient: Callable[[], str],
    make_user: Any,
    make_care_team: Any,
    add_observations: Callable[..., None],
    auth_headers: Callable[..., dict[str, str]],
    audit_rows: Callable[..., list[dict[str, Any]]],
    db: psycopg.Connection,
) -> None:
    patient = make_patient()
    clinician = make_user("clinician")
    make_care_team([clinician], [patient])
    start = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)
    points = episodes(start)
    add_observations(patient, "spo2", points)

    response = await client.post(url(patient), json={"plan": LOW_85, "days": 2}, headers=auth_headers(clinician))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["readings"] == len(points)

    readings = [Reading("spo2", value, ts) for ts, value in points]
    current = raises(patient, default_care_plan(patient), readings)
    proposed_plan = decode_care_plan(msgspec.json.encode({**LOW_85, "patient_id": patient, "version": 1}))
    proposed = raises(patient, proposed_plan, readings)
    # The scenario does what it says: four SpO2 dips below 90 %, one below 85 % (NEWS2 scores
    # the same readings under both plans and raises alike).
    assert sum(rule == "spo2_low" for rule, _ in current) == 4
    assert sum(rule == "spo2_low" for rule, _ in proposed) == 1

    def by_rule(found: list[tuple[str, datetime]]) -> dict[str, tuple[int, datetime]]:
        out: dict[str, tuple[int, datetime]] = {}
        for rule, at in found:
            count, first = out.get(rule, (0, at))
            out[rule] = (count + 1, first)
        return out

    for side, expected in (("current", current), ("proposed", proposed)):
        answer = body[side]
        assert answer["alerts"] == len(expected)
        got = {r["rule"]: (r["alerts"], datetime.fromisoformat(r["first_at"])) for r in answer["by_rule"]}
        assert got == by_rule(expected)
    assert body["current"]["version"] == 0
    assert body["difference"] == len(proposed) - len(current) == 1 - 4
    assert body["proposed"]["alerts"] < body["current"]["alerts"]

    # Nothing stored, and the request is audited with its figures only.
    assert db.execute("SELECT count(*) FROM care_plans WHERE patient_id = %s", (patient,)).fetchone() == (0,)
    events = audit_rows(patient_id=patient, action="what_if")
    assert len(events) == 1
    assert events[0]["outcome"] == "allowed"
    assert events[0]["detail"]["current_alerts"] == len(current)
    assert events[0]["detail"]["proposed_alerts"] == len(proposed)


async def test_the_current_plan_is_the_stored_one(
    client: httpx.AsyncClient,
    make_patient: Callable[[], str],
    make_user: Any,
    make_care_team: Any,
    add_observations: Callable[..., None],
    auth_headers: Callable[..., dict[str, str]],
) -> None:
    patient = make_patient()
    admin = make_user("admin")
    start = (datetime.now(UTC) - timedelta(hours=8)).replace(microsecond=0)
    add_observations(patient, "spo2", episodes(start))
    headers = auth_headers(admin)
    # The stored plan becomes 85 %: proposing the default back shows the default's count.
    stored = await client.put(
        f"/api/v1/patients/{patient}/care-plan", json={"plan": LOW_85, "version": 0}, headers=headers
    )
    if stored.status_code == 503:
        pytest.fail("the care-plan topic did not take the plan: " + stored.text)
    assert stored.status_code == 200, stored.text
    response = await client.post(url(patient), json={"plan": {}, "days": 1}, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["current"]["version"] == 1
    spo2 = {
        side: {r["rule"]: r["alerts"] for r in body[side]["by_rule"]}.get("spo2_low")
        for side in ("current", "proposed")
    }
    assert spo2 == {"current": 1, "proposed": 4}


async def test_bounds_and_refusals(
    settings_for: Any,
    serve: Any,
    anyio_backend: str,
    make_patient: Callable[[], str],
    make_user: Any,
    make_care_team: Any,
    add_observations: Callable[..., None],
    auth_headers: Callable[..., dict[str, str]],
) -> None:
    patient, other = make_patient(), make_patient()
    clinician = make_user("clinician")
    make_care_team([clinician], [patient])
    add_observations(patient, "spo2", episodes(datetime.now(UTC) - timedelta(hours=7)))
    app = create_app(settings_for(what_if_max_readings=100, kafka_idempotent_producer=False))
    async with serve(app) as client:
        headers = auth_headers(clinician)
        assert_problem(
            await client.post(url(patient), json={"plan": {}, "days": 1}, headers=headers), 422, "too_many_readings"
        )
        for days in (0, 31):
            response = await client.post(url(patient), json={"plan": {}, "days": days}, headers=headers)
            assert_problem(response, 422, "validation_error")
        bad = {"limits": [{"rule": "spo2_low", "metric": "spo2", "direction": "low", "raise_at": 90, "clear_at": 80}]}
        assert_problem(
            await client.post(url(patient), json={"plan": bad, "days": 1}, headers=headers), 422, "invalid_care_plan"
        )
        assert_problem(
            await client.post(url(other), json={"plan": {}, "days": 1}, headers=headers), 404, "patient_not_found"
        )
        me = make_user("patient", patient_id=patient)
        assert_problem(
            await client.post(url(patient), json={"plan": {}, "days": 1}, headers=auth_headers(me)),
            403,
            "care_team_only",
        )
