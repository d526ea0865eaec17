"""The clinician's alerts API (api/alerts) over the real database: the inbox with its filters,
sorts and cursors; one alert with its history; precision figures; scope (404 outside the care
team, for patients, for ids that do not exist) and exactly one audit event per request, denied
ones included.

Alerts are written as the alert service writes them (an `alerts` row and its `opened` history
row, notifications queued: `raise_alert` of tests/api/support.py), through the superuser `db`
connection. Every move, legal and not, and the cancel of queued notifications are in
test_alerts_api_moves.py.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest

from tests.api.conftest import TestUser
from tests.api.support import assert_problem, audit_count, raise_alert

pytestmark = pytest.mark.anyio


async def test_inbox_shows_the_care_teams_alerts_most_severe_then_oldest(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    team: dict[str, Any],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    p1, p2 = team["patients"]
    old_high = raise_alert(db, p1, rule="spo2_low", severity="high", age=timedelta(hours=2))
    new_high = raise_alert(db, p2, rule="spo2_low", severity="high", age=timedelta(minutes=1))
    critical = raise_alert(db, p1, rule="news2", severity="critical", age=timedelta(minutes=3))
    low = raise_alert(db, p2, rule="weight_gain", severity="low", age=timedelta(hours=5))
    raise_alert(db, team["other_patient"], severity="critical")  # another team's: never listed
    headers = auth_headers(team["clinician"])

    page = await client.get("/api/v1/alerts", headers=headers)
    assert page.status_code == 200, page.text
    assert [a["id"] for a in page.json()["items"]] == [critical, old_high, new_high, low]
    assert page.json()["next_cursor"] is None

    by_age = await client.get("/api/v1/alerts", params={"sort": "age"}, headers=headers)
    assert [a["id"] for a in by_age.json()["items"]] == [low, old_high, critical, new_high]

    high = await client.get("/api/v1/alerts", params={"severity": ["high", "critical"]}, headers=headers)
    assert [a["id"] for a in high.json()["items"]] == [critical, old_high, new_high]
    rule = await client.get("/api/v1/alerts", params={"rule": "weight_gain"}, headers=headers)
    assert [a["id"] for a in rule.json()["items"]] == [low]
    patient = await client.get("/api/v1/alerts", params={"patient_id": p1}, headers=headers)
    assert [a["id"] for a in patient.json()["items"]] == [critical, old_high]
    # Another team's patient as a filter: nothing, not an error that tells it exists.
    other = await client.get("/api/v1/alerts", params={"patient_id": team["other_patient"]}, headers=headers)
    assert other.status_code == 200
    assert other.json()["items"] == []

    assert (
        await client.post(
            f"/api/v1/alerts/{low}/assign", json={"assignee": "{}".format(team["clinician"].id)}, headers=headers
        )
    ).status_code == 200
    mine = await client.get("/api/v1/alerts", params={"assignee": "me"}, headers=headers)
    assert [a["id"] for a in mine.json()["items"]] == [low]
    unassigned = await client.get("/api/v1/alerts", params={"assignee": "none"}, headers=headers)
    assert low not in [a["id"] for a in unassigned.json()["items"]]
    assert_problem(
        await client.get("/api/v1/alerts", params={"assignee": "someone"}, headers=headers), 422, "invalid_assignee"
    )

    await client.post(f"/api/v1/alerts/{low}/resolve", json={"disposition": "duplicate"}, headers=headers)
    open_now = await client.get("/api/v1/alerts", headers=headers)
    assert low not in [a["id"] for a in open_now.json()["items"]]
    resolved = await client.get("/api/v1/alerts", params={"state": "resolved"}, headers=headers)
    assert [a["id"] for a in resolved.json()["items"]] == [low]


async def test_cursor_pages_cover_the_inbox_once(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    team: dict[str, Any],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    p1, p2 = team["patients"]
    made = [
        raise_alert(db, p, rule=f"rule_{i}", severity=sev, age=timedelta(minutes=10 * i))
        for i, (p, sev) in enumerate([(p1, "low"), (p2, "high"), (p1, "high"), (p2, "medium"), (p1, "critical")])
    ]
    headers = auth_headers(team["clinician"])
    for sort in ("severity", "age"):
        full = await client.get("/api/v1/alerts", params={"sort": sort}, headers=headers)
        expected = [a["id"] for a in full.json()["items"]]
        assert sorted(expected) == sorted(made)
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"sort": sort, "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = await client.get("/api/v1/alerts", params=params, headers=headers)
            assert page.status_code == 200, page.text
            seen += [a["id"] for a in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert seen == expected
    first = await client.get("/api/v1/alerts", params={"limit": 2}, headers=headers)
    other_sort = {"sort": "age", "cursor": first.json()["next_cursor"]}
    assert_problem(await client.get("/api/v1/alerts", params=other_sort, headers=headers), 422, "invalid_cursor")
    # Well-formed base64 JSON that is not ours: a number where the id belongs.
    crafted = base64.urlsafe_b64encode(json.dumps(["severity", 1, "2025-01-01T00:00:00+00:00", 5]).encode())
    assert_problem(
        await client.get("/api/v1/alerts", params={"cursor": crafted.decode()}, headers=headers), 422, "invalid_cursor"
    )
    bad = {"cursor": "not-a-cursor"}
    before = audit_count(db, team["clinician"])
    assert_problem(await client.get("/api/v1/alerts", params=bad, headers=headers), 422, "invalid_cursor")
    assert audit_count(db, team["clinician"]) == before + 1  # refused, and audited once
    assert_problem(
        await client.get("/api/v1/alerts", params={"limit": 10_000}, headers=headers), 422, "validation_error"
    )


async def test_precision_counts_only_dispositions_of_a_person(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    team: dict[str, Any],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    p1, p2 = team["patients"]
    headers = auth_headers(team["clinician"])
    for patient, disposition in [(p1, "actionable"), (p2, "not_actionable"), (p1, "false_reading")]:
        alert_id = raise_alert(db, patient, rule="hr_high")
        answer = await client.post(
            f"/api/v1/alerts/{alert_id}/resolve", json={"disposition": disposition}, headers=headers
        )
        assert answer.status_code == 200, answer.text
    # A detection's clear: self_resolved, not counted as a person's.
    cleared = raise_alert(db, p2, rule="hr_high")
    db.execute(
        "UPDATE alerts SET state = 'resolved', disposition = 'self_resolved', resolved_at = now() WHERE id = %s",
        (cleared,),
    )
    raise_alert(db, p1, rule="spo2_low")  # open: not resolved by anyone
    raise_alert(db, team["other_patient"], rule="hr_high")  # another team's

    answer = await client.get("/api/v1/alerts/precision", params={"days": 7}, headers=headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    rules = {r["rule"]: r for r in body["rules"]}
    assert rules["hr_high"]["resolved_by_person"] == 3
    assert rules["hr_high"]["actionable"] == 1
    assert rules["hr_high"]["precision"] == pytest.approx(1 / 3)
    assert "spo2_low" not in rules
    assert body["alerts_opened"] == 5
    assert body["patients"] == 2
    assert body["alerts_per_patient_day"] == pytest.approx(5 / (2 * 7))
    assert_problem(
        await client.get("/api/v1/alerts/precision", params={"days": 0}, headers=headers), 422, "validation_error"
    )


async def test_every_route_with_an_id_is_404_outside_the_scope_and_audited_once(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    team: dict[str, Any],
    make_user: Callable[..., TestUser],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    alert_id = raise_alert(db, team["patients"][0], queued=("email",))
    own_patient = make_user("patient", patient_id=team["patients"][0])
    ops = make_user("ops")
    routes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "", None),
        ("POST", "/acknowledge", None),
        ("POST", "/assign", {"assignee": None}),
        ("POST", "/snooze", {"minutes": 10}),
        ("POST", "/resolve", {"disposition": "actionable"}),
        ("POST", "/notes", {"note": "hello"}),
    ]
    for caller in (team["outsider"], own_patient, ops, team["clinician"]):
        headers = auth_headers(caller)
        for method, suffix, body in routes:
            for target in (alert_id, str(uuid.uuid4())):
                if caller is team["clinician"] and target == alert_id:
                    continue  # the allowed case is tested elsewhere
                before = audit_count(db, caller)
                answer = await client.request(method, f"/api/v1/alerts/{target}{suffix}", json=body, headers=headers)
                problem = assert_problem(answer, 404, "alert_not_found")
                assert team["patients"][0] not in problem["detail"]
                assert audit_count(db, caller) == before + 1, (caller.role, method, suffix)
    denied = db.execute(
        "SELECT outcome, detail->>'reason' FROM audit_events WHERE actor_id = %s AND resource = 'alert' ORDER BY id",
        (team["outsider"].id,),
    ).fetchall()
    assert {d[0] for d in denied} == {"denied"}
    assert {d[1] for d in denied} == {"not_visible", "not_found"}
    # Nothing happened to the alert or its queue.
    assert db.execute("SELECT state FROM alerts WHERE id = %s", (alert_id,)).fetchone() == ("open",)
    assert db.execute("SELECT state FROM notifications WHERE alert_id = %s", (alert_id,)).fetchall() == [("queued",)]
    # Inbox, figures and stream are refused to patients and ops, audited.
    for caller in (own_patient, ops):
        headers = {**auth_headers(caller), "Accept": "text/event-stream"}
        for path in ("/api/v1/alerts", "/api/v1/alerts/precision", "/api/v1/alerts/stream"):
            before = audit_count(db, caller)
            assert_problem(await client.get(path, headers=headers), 403, "clinicians_only")
            assert audit_count(db, caller) == before + 1
    # Allowed requests are audited once too, with the patient.
    clinician = team["clinician"]
    headers = auth_headers(clinician)
    for method, suffix, body in [("GET", "", None), ("POST", "/notes", {"note": "seen"}), ("GET", "", None)]:
        before = audit_count(db, clinician)
        answer = await client.request(method, f"/api/v1/alerts/{alert_id}{suffix}", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
        assert audit_count(db, clinician) == before + 1
    last = db.execute(
        "SELECT action, outcome, patient_id FROM audit_events WHERE actor_id = %s AND resource = 'alert' "
        "ORDER BY id DESC LIMIT 1",
        (clinician.id,),
    ).fetchone()
    assert last == ("read", "allowed", team["patients"][0])
    before = audit_count(db, clinician)
    conflict = await client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"disposition": "other"}, headers=headers)
    assert_problem(conflict, 422, "note_required")
    assert audit_count(db, clinician) == before + 1


async def test_break_glass_reads_but_does_not_act(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    team: dict[str, Any],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    alert_id = raise_alert(db, team["other_patient"])
    stranger = team["clinician"]
    db.execute(
        "INSERT INTO break_glass_grants (user_id, patient_id, reason, expires_at) "
        "VALUES (%s, %s, 'covering the night shift for a colleague', now() + interval '1 hour')",
        (stranger.id, team["other_patient"]),
    )
    headers = auth_headers(stranger)
    read = await client.get(f"/api/v1/alerts/{alert_id}", headers=headers)
    assert read.status_code == 200, read.text
    event = db.execute(
        "SELECT detail->>'break_glass' FROM audit_events WHERE actor_id = %s AND resource = 'alert' "
        "ORDER BY id DESC LIMIT 1",
        (stranger.id,),
    ).fetchone()
    assert event == ("true",)
    assert_problem(await client.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers=headers), 403, "care_team_only")
    # Not in the inbox: that is the care team's.
    inbox = await client.get("/api/v1/alerts", headers=headers)
    assert alert_id not in [a["id"] for a in inbox.json()["items"]]


async def test_an_admin_sees_and_counts_every_patients_alerts(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    team: dict[str, Any],
    make_user: Callable[..., TestUser],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    ours = raise_alert(db, team["patients"][0], rule="admin_view_rule")
    theirs = raise_alert(db, team["other_patient"], rule="admin_view_rule")
    admin = make_user("admin")
    headers = auth_headers(admin)
    inbox = await client.get("/api/v1/alerts", params={"rule": "admin_view_rule", "sort": "age"}, headers=headers)
    assert inbox.status_code == 200, inbox.text
    assert [a["id"] for a in inbox.json()["items"]] == [ours, theirs]
    acted = await client.post(f"/api/v1/alerts/{theirs}/resolve", json={"disposition": "actionable"}, headers=headers)
    assert acted.status_code == 200, acted.text
    figures = await client.get("/api/v1/alerts/precision", headers=headers)
    assert figures.status_code == 200, figures.text
    total = db.execute("SELECT count(*) FROM patients").fetchone()
    assert total is not None
    assert figures.json()["patients"] == total[0]
    assert {"rule": "admin_view_rule", "resolved_by_person": 1, "actionable": 1, "precision": 1.0} in figures.json()[
        "rules"
    ]
