"""The clinician's alerts API (api/alerts) over the real database: every move on an alert,
legal and not (acknowledge, resolve with a disposition, snooze, assign), the cancel of queued
notifications, the history each move writes and `If-Match` against a concurrent change. The
inbox, precision figures and scope are in test_alerts_api.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from tests.api.conftest import TestUser
from tests.api.support import assert_problem, raise_alert

pytestmark = pytest.mark.anyio


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
