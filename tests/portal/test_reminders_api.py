"""A patient's reminders and profile (ADR 0026): own only (a reminder of another patient is 404,
other roles 403), each call audited once, the profile validated."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from tests.api.conftest import TestUser
from tests.api.support import assert_problem

pytestmark = pytest.mark.anyio

REMINDERS = "/api/v1/me/reminders"
PROFILE = "/api/v1/me/profile"


def add_reminder(
    db: psycopg.Connection,
    patient: str,
    *,
    at: datetime,
    state: str,
    outcome: str | None,
    channel: str = "in_app",
    metric: str = "bp_systolic",
    follow_up: bool = False,
) -> int:
    """A reminder row as the alert service writes it."""
    kind, dose = ("dose", "pill-a") if metric == "medication_taken" else ("measurement", None)
    key = f"dose:{dose}" if dose else f"measurement:{metric}"
    row = db.execute(
        "INSERT INTO reminders (patient_id, schedule_key, slot_key, kind, metric, dose_id, channel, follow_up, "
        "scheduled_at, window_start, window_end, due_at, state, outcome, sent_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            patient,
            key,
            at.strftime("%Y-%m-%dT%H:%M"),
            kind,
            metric,
            dose,
            channel,
            follow_up,
            at,
            at - timedelta(hours=1),
            at + timedelta(hours=1),
            at,
            state,
            outcome,
            at if state == "sent" else None,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def two(make_patient: Any, make_user: Any) -> dict[str, Any]:
    mine, theirs = make_patient(), make_patient()
    return {
        "mine": mine,
        "theirs": theirs,
        "patient": make_user("patient", patient_id=mine),
        "other": make_user("patient", patient_id=theirs),
        "clinician": make_user("clinician"),
    }


def events(db: psycopg.Connection, user: TestUser) -> list[tuple[str, str, str, str | None]]:
    return [
        (str(a), str(r), str(o), p)
        for a, r, o, p in db.execute(
            "SELECT action, resource, outcome, patient_id FROM audit_events WHERE actor_id = %s ORDER BY id",
            (user.id,),
        ).fetchall()
    ]


async def test_my_reminders_are_mine_only_with_outcomes_in_words_and_audited_once(
    client: httpx.AsyncClient, two: dict[str, Any], db: psycopg.Connection, auth_headers: Callable[..., dict[str, str]]
) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    mine, theirs = two["mine"], two["theirs"]
    coming = add_reminder(db, mine, at=now + timedelta(hours=1), state="queued", outcome=None)
    sent = add_reminder(db, mine, at=now - timedelta(hours=3), state="sent", outcome="reading_after")
    cancelled = add_reminder(
        db, mine, at=now - timedelta(hours=5), state="cancelled", outcome="cancelled_reading_arrived", channel="email"
    )
    dose = add_reminder(
        db, mine, at=now - timedelta(hours=2), state="skipped", outcome="skipped_quiet_hours", metric="medication_taken"
    )
    old = add_reminder(db, mine, at=now - timedelta(days=9), state="sent", outcome="no_reading")
    foreign = add_reminder(db, theirs, at=now - timedelta(hours=1), state="sent", outcome="sent")
    headers = auth_headers(two["patient"])

    got = await client.get(REMINDERS, headers=headers)
    assert got.status_code == 200, got.text
    body = got.json()
    assert [r["id"] for r in body["pending"]] == [coming]
    assert body["pending"][0]["outcome"] is None
    assert body["pending"][0]["outcome_text"] == "Coming up"
    assert [r["id"] for r in body["recent"]] == [dose, sent, cancelled]  # newest first; 9 days ago is out
    words = {r["id"]: (r["what"], r["outcome_text"]) for r in body["recent"]}
    assert words[dose] == ("Take your medicine", "Not sent. It was in your quiet hours.")
    assert words[sent][0] == "Check your blood pressure"
    assert "came in first" in words[cancelled][1]
    assert foreign not in {r["id"] for r in body["pending"] + body["recent"]}
    assert events(db, two["patient"]) == [("read", "reminders", "allowed", mine)]

    longer = await client.get(REMINDERS, params={"days": 30, "channel": "in_app"}, headers=headers)
    assert [r["id"] for r in longer.json()["recent"]] == [dose, sent, old]
    assert_problem(await client.get(REMINDERS, params={"days": 31}, headers=headers), 422, "validation_error")

    # Seen: my own sent reminder once; another patient's, a queued one or none at all is 404.
    seen = await client.post(f"{REMINDERS}/{sent}/seen", headers=headers)
    assert seen.status_code == 200
    first_seen = seen.json()["seen_at"]
    assert first_seen is not None
    again = await client.post(f"{REMINDERS}/{sent}/seen", headers=headers)
    assert again.json()["seen_at"] == first_seen
    for other in (foreign, coming, 2**62):
        assert_problem(await client.post(f"{REMINDERS}/{other}/seen", headers=headers), 404, "reminder_not_found")
    row = db.execute("SELECT seen_at FROM reminders WHERE id = %s", (foreign,)).fetchone()
    assert row == (None,)

    # Staff have no reminders of their own: 403, audited as denied.
    staff = await client.get(REMINDERS, headers=auth_headers(two["clinician"]))
    assert_problem(staff, 403, "not_a_patient")
    assert events(db, two["clinician"]) == [("read", "reminders", "denied", None)]


async def test_my_profile_defaults_saves_validates_and_is_audited_once(
    client: httpx.AsyncClient, two: dict[str, Any], db: psycopg.Connection, auth_headers: Callable[..., dict[str, str]]
) -> None:
    mine = two["mine"]
    db.execute(
        "INSERT INTO care_plans (patient_id, version, plan) VALUES (%s, 1, %s::jsonb)",
        (mine, f'{{"patient_id": "{mine}", "version": 1, "timezone": "Europe/Oslo"}}'),
    )
    headers = auth_headers(two["patient"])
    got = await client.get(PROFILE, headers=headers)
    assert got.status_code == 200
    assert got.json() == {
        "email": None,
        "channels": ["in_app"],
        "quiet_start": None,
        "quiet_end": None,
        "time_zone": None,
        "effective_time_zone": "Europe/Oslo",
        "updated_at": None,
    }
    assert events(db, two["patient"]) == [("read", "profile", "allowed", mine)]

    wanted = {
        "email": "pat@example.org",
        "channels": ["email", "in_app"],
        "quiet_start": "21:30",
        "quiet_end": "07:00",
        "time_zone": "America/New_York",
    }
    saved = await client.put(PROFILE, json=wanted, headers=headers)
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert body["channels"] == ["in_app", "email"]
    assert (body["quiet_start"], body["quiet_end"]) == ("21:30:00", "07:00:00")
    assert body["effective_time_zone"] == "America/New_York"
    row = db.execute(
        "SELECT email, channels, quiet_start::text, quiet_end::text, time_zone FROM patient_preferences "
        "WHERE patient_id = %s",
        (mine,),
    ).fetchone()
    assert row == ("pat@example.org", ["in_app", "email"], "21:30:00", "07:00:00", "America/New_York")
    [update] = [e for e in events(db, two["patient"]) if e[0] == "update"]
    assert update == ("update", "profile", "allowed", mine)
    detail = db.execute(
        "SELECT detail FROM audit_events WHERE actor_id = %s AND action = 'update'", (two["patient"].id,)
    ).fetchone()
    assert detail is not None
    assert detail[0]["changed"] == ["email", "channels", "quiet_start", "quiet_end", "time_zone"]
    assert "pat@example.org" not in str(detail[0])  # fields named, values not

    bad = [
        {"channels": ["email"]},  # e-mail without an address
        {"email": "not-an-address", "channels": ["in_app"]},
        {"quiet_start": "22:00"},  # one quiet time only
        {"quiet_start": "22:00", "quiet_end": "22:00"},
        {"time_zone": "Mars/Olympus"},
        {"channels": ["sms"]},
        {"channels": ["in_app", "in_app"]},
        {"nickname": "x"},
    ]
    for payload in bad:
        assert_problem(await client.put(PROFILE, json=payload, headers=headers), 422, "validation_error")
    still = db.execute("SELECT email FROM patient_preferences WHERE patient_id = %s", (mine,)).fetchone()
    assert still == ("pat@example.org",)

    # Clearing: no e-mail, in-app only, no quiet hours, the plan's zone again.
    cleared = await client.put(PROFILE, json={"email": "", "channels": ["in_app"]}, headers=headers)
    assert cleared.json()["email"] is None
    assert cleared.json()["effective_time_zone"] == "Europe/Oslo"

    # Staff: 403. The other patient sees their own (default) profile, never this one.
    assert_problem(await client.get(PROFILE, headers=auth_headers(two["clinician"])), 403, "not_a_patient")
    theirs = await client.get(PROFILE, headers=auth_headers(two["other"]))
    assert theirs.json()["email"] is None
    assert theirs.json()["channels"] == ["in_app"]


async def test_staff_of_every_role_get_403_on_every_route_each_audited_once(
    client: httpx.AsyncClient,
    two: dict[str, Any],
    db: psycopg.Connection,
    make_user: Any,
    auth_headers: Callable[..., dict[str, str]],
) -> None:
    now = datetime.now(UTC)
    reminder = add_reminder(db, two["mine"], at=now - timedelta(minutes=30), state="sent", outcome="sent")
    routes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", REMINDERS, None),
        ("POST", f"{REMINDERS}/{reminder}/seen", None),
        ("GET", PROFILE, None),
        ("PUT", PROFILE, {"email": "x@example.org", "channels": ["email"]}),
    ]
    for role in ("clinician", "admin", "ops"):
        user = make_user(role)
        headers = auth_headers(user)
        for method, path, body in routes:
            answer = await client.request(method, path, json=body, headers=headers)
            assert_problem(answer, 403, "not_a_patient")
        assert [(o, p) for _, _, o, p in events(db, user)] == [("denied", None)] * len(routes)
    # Nothing of the patient's changed.
    assert db.execute("SELECT seen_at FROM reminders WHERE id = %s", (reminder,)).fetchone() == (None,)
    assert db.execute("SELECT 1 FROM patient_preferences WHERE patient_id = %s", (two["mine"],)).fetchone() is None
