"""The clinician's alerts API (api/alerts) over the real database: the inbox with its filters,
sorts and cursors; one alert with its history; every move, legal and not; the cancel of queued
notifications; precision figures; scope (404 outside the care team, for patients, for ids that
do not exist) and exactly one audit event per request, denied ones included.

Alerts are written as the alert service writes them (an `alerts` row and its `opened` history
row, notifications queued), through the superuser `db` connection.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.api.conftest import TestUser
from tests.api.support import assert_problem

pytestmark = pytest.mark.anyio


def raise_alert(
    db: psycopg.Connection,
    patient_id: str,
    *,
    rule: str = "spo2_low",
    severity: str = "high",
    age: timedelta = timedelta(minutes=5),
    queued: tuple[str, ...] = (),
) -> str:
    """An open alert as the alert service opens it, with its history row and queued notifications."""
    alert_id = str(uuid.uuid4())
    opened = datetime.now(UTC) - age
    db.execute(
        "INSERT INTO alerts (id, patient_id, rule, severity, state, title, evidence, opened_at, updated_at, "
        "detection_ids, last_triggered_at, next_escalation_at) VALUES (%s, %s, %s, %s, 'open', %s, %s, %s, %s, %s, "
        "%s, %s)",
        (
            alert_id,
            patient_id,
            rule,
            severity,
            f"{rule} ({severity})",
            Jsonb({"value": 88}),
            opened,
            opened,
            [f"det-{uuid.uuid4().hex}"],
            opened,
            opened + timedelta(minutes=15),
        ),
    )
    db.execute(
        "INSERT INTO alert_events (alert_id, at, from_state, to_state, patient_id, kind, detail) "
        "VALUES (%s, %s, NULL, 'open', %s, 'opened', %s)",
        (alert_id, opened, patient_id, Jsonb({"why": "detection raised"})),
    )
    for channel in queued:
        db.execute(
            "INSERT INTO notifications (alert_id, tier, channel, recipient, due_at) VALUES (%s, 1, %s, %s, %s)",
            (alert_id, channel, f"{channel}-recipient@example.org", opened + timedelta(minutes=15)),
        )
    return alert_id


@pytest.fixture
def team(
    make_patient: Callable[[], str],
    make_user: Callable[..., TestUser],
    make_care_team: Callable[..., uuid.UUID],
) -> dict[str, Any]:
    """A clinician and a colleague with two patients; another team's clinician and patient."""
    patients = [make_patient(), make_patient()]
    clinician, colleague = make_user("clinician"), make_user("clinician")
    make_care_team([clinician, colleague], patients)
    other_patient = make_patient()
    outsider = make_user("clinician")
    make_care_team([outsider], [other_patient])
    return {
        "patients": patients,
        "clinician": clinician,
        "colleague": colleague,
        "outsider": outsider,
        "other_patient": other_patient,
    }


def audit_count(db: psycopg.Connection, user: TestUser) -> int:
    row = db.execute(
        "SELECT count(*) FROM audit_events WHERE actor_id = %s AND resource = 'alert'", (user.id,)
    ).fetchone()
    assert row is not None
    return int(row[0])


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


async def test_acknowledge_writes_history_and_cancels_queued_notifications(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    team: dict[str, Any],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    alert_id = raise_alert(db, team["patients"][0], queued=("email", "webhook"))
    # One already sent stays as it was.
    db.execute(
        "INSERT INTO notifications (alert_id, tier, channel, recipient, due_at, state, sent_at) "
        "VALUES (%s, 0, 'email', 'sent@example.org', now(), 'sent', now())",
        (alert_id,),
    )
    headers = auth_headers(team["clinician"])
    answer = await client.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={"note": "calling"}, headers=headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["state"] == "acknowledged"
    assert body["acknowledged_by"] == str(team["clinician"].id)
    assert [e["kind"] for e in body["history"]] == ["opened", "acknowledged"]
    ack = body["history"][-1]
    assert ack["actor_id"] == str(team["clinician"].id)
    assert ack["note"] == "calling"
    assert (ack["from_state"], ack["to_state"]) == ("open", "acknowledged")
    states = db.execute(
        "SELECT channel, state FROM notifications WHERE alert_id = %s ORDER BY channel, state", (alert_id,)
    ).fetchall()
    assert states == [("email", "cancelled"), ("email", "sent"), ("webhook", "cancelled")]
    row = db.execute("SELECT state, next_escalation_at FROM alerts WHERE id = %s", (alert_id,)).fetchone()
    assert row == ("acknowledged", None)

    again = await client.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers=headers)
    problem = assert_problem(again, 409, "invalid_transition")
    assert "already acknowledged" in problem["detail"]
    history = await client.get(f"/api/v1/alerts/{alert_id}", headers=headers)
    assert [e["kind"] for e in history.json()["history"]] == ["opened", "acknowledged"]


async def test_resolve_needs_a_persons_disposition_and_other_needs_a_note(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    team: dict[str, Any],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    alert_id = raise_alert(db, team["patients"][0], queued=("email",))
    headers = auth_headers(team["clinician"])
    url = f"/api/v1/alerts/{alert_id}/resolve"
    assert_problem(await client.post(url, json={}, headers=headers), 422, "validation_error")
    assert_problem(
        await client.post(url, json={"disposition": "self_resolved"}, headers=headers), 422, "validation_error"
    )
    assert_problem(await client.post(url, json={"disposition": "other"}, headers=headers), 422, "note_required")
    assert_problem(
        await client.post(url, json={"disposition": "other", "note": "   "}, headers=headers), 422, "note_required"
    )
    row = db.execute("SELECT state FROM alerts WHERE id = %s", (alert_id,)).fetchone()
    assert row == ("open",)  # nothing lost, nothing changed

    done = await client.post(url, json={"disposition": "other", "note": "cuff too small"}, headers=headers)
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "resolved"
    assert done.json()["disposition"] == "other"
    assert done.json()["resolution_note"] == "cuff too small"
    assert done.json()["resolved_by"] == str(team["clinician"].id)
    assert db.execute("SELECT state FROM notifications WHERE alert_id = %s", (alert_id,)).fetchall() == [("cancelled",)]

    assert_problem(
        await client.post(url, json={"disposition": "actionable"}, headers=headers), 409, "invalid_transition"
    )
    assert_problem(
        await client.post(f"/api/v1/alerts/{alert_id}/snooze", json={"minutes": 10}, headers=headers),
        409,
        "invalid_transition",
    )
    assert_problem(
        await client.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers=headers), 409, "invalid_transition"
    )
    # A note is possible in any state.
    note = await client.post(f"/api/v1/alerts/{alert_id}/notes", json={"note": "family informed"}, headers=headers)
    assert note.status_code == 200, note.text
    assert [e["kind"] for e in note.json()["history"]] == ["opened", "resolved", "note"]
    assert_problem(
        await client.post(f"/api/v1/alerts/{alert_id}/notes", json={"note": "  "}, headers=headers),
        422,
        "note_required",
    )


async def test_snooze_and_assign(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    team: dict[str, Any],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    alert_id = raise_alert(db, team["patients"][0], queued=("webhook",))
    headers = auth_headers(team["clinician"])
    url = f"/api/v1/alerts/{alert_id}/snooze"
    assert_problem(await client.post(url, json={"minutes": 24 * 60 + 1}, headers=headers), 422, "validation_error")
    assert_problem(await client.post(url, json={}, headers=headers), 422, "validation_error")
    both = {"minutes": 5, "until": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
    assert_problem(await client.post(url, json=both, headers=headers), 422, "validation_error")
    too_far = {"until": (datetime.now(UTC) + timedelta(hours=25)).isoformat()}
    assert_problem(await client.post(url, json=too_far, headers=headers), 422, "invalid_snooze")
    past = {"until": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()}
    assert_problem(await client.post(url, json=past, headers=headers), 422, "invalid_snooze")

    snoozed = await client.post(url, json={"minutes": 30, "note": "repeat in 30 min"}, headers=headers)
    assert snoozed.status_code == 200, snoozed.text
    body = snoozed.json()
    assert body["state"] == "snoozed"
    # Counted from the server's clock at the move (the alert's updated_at).
    until = datetime.fromisoformat(body["snoozed_until"])
    assert until - datetime.fromisoformat(body["updated_at"]) == timedelta(minutes=30)
    assert body["history"][-1]["kind"] == "snoozed"
    assert body["history"][-1]["note"] == "repeat in 30 min"
    assert db.execute("SELECT state FROM notifications WHERE alert_id = %s", (alert_id,)).fetchall() == [("cancelled",)]

    assign = f"/api/v1/alerts/{alert_id}/assign"
    given = await client.post(assign, json={"assignee": str(team["colleague"].id)}, headers=headers)
    assert given.status_code == 200, given.text
    assert given.json()["assigned_to"] == str(team["colleague"].id)
    assert given.json()["state"] == "snoozed"
    assert given.json()["history"][-1]["detail"] == {"assigned_to": str(team["colleague"].id), "assigned_from": None}
    assert_problem(
        await client.post(assign, json={"assignee": str(team["colleague"].id)}, headers=headers),
        409,
        "invalid_transition",
    )
    assert_problem(
        await client.post(assign, json={"assignee": str(team["outsider"].id)}, headers=headers),
        422,
        "assignee_not_in_care_team",
    )
    assert_problem(
        await client.post(assign, json={"assignee": str(uuid.uuid4())}, headers=headers),
        422,
        "assignee_not_in_care_team",
    )
    taken = await client.post(assign, json={"assignee": None}, headers=headers)
    assert taken.status_code == 200
    assert taken.json()["assigned_to"] is None
    # A snoozed alert may be acknowledged.
    ack = await client.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers=headers)
    assert ack.status_code == 200
    assert ack.json()["state"] == "acknowledged"
    assert ack.json()["snoozed_until"] is None


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


async def test_if_match_refuses_a_move_on_an_alert_changed_since_it_was_read(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    team: dict[str, Any],
    auth_headers: Callable[[TestUser], dict[str, str]],
) -> None:
    alert_id = raise_alert(db, team["patients"][0])
    mine, theirs = auth_headers(team["clinician"]), auth_headers(team["colleague"])
    read = await client.get(f"/api/v1/alerts/{alert_id}", headers=mine)
    seen = read.headers["ETag"]
    # The colleague acknowledges first.
    ack = await client.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers={**theirs, "If-Match": seen})
    assert ack.status_code == 200, ack.text
    assert ack.headers["ETag"] != seen
    stale = await client.post(
        f"/api/v1/alerts/{alert_id}/resolve", json={"disposition": "actionable"}, headers={**mine, "If-Match": seen}
    )
    problem = assert_problem(stale, 412, "precondition_failed")
    assert "acknowledged" in problem["detail"]
    assert db.execute("SELECT state FROM alerts WHERE id = %s", (alert_id,)).fetchone() == ("acknowledged",)
    fresh = await client.post(
        f"/api/v1/alerts/{alert_id}/resolve",
        json={"disposition": "actionable"},
        headers={**mine, "If-Match": ack.headers["ETag"]},
    )
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["state"] == "resolved"
