"""Who viewed my record (ADR 0025): a clinician's reads appear in the patient's log with their
name and role, emergency access with its reason; another patient's events never; the patient
flags an access (only of their own record), the privacy officer reviews it and the patient sees
the outcome; the log pages without repeats and reading it is audited once."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from tests.api.conftest import TestUser
from tests.api.support import assert_problem

pytestmark = pytest.mark.anyio

LOG = "/api/v1/me/access-log"
QUEUE = "/api/v1/admin/privacy-flags"
REASON = "Seen in the emergency department, unconscious on arrival"


def name(db: psycopg.Connection, user: TestUser, display_name: str) -> None:
    db.execute("UPDATE users SET display_name = %s WHERE id = %s", (display_name, user.id))


@pytest.fixture
def ward(db: psycopg.Connection, make_patient: Any, make_user: Any, make_care_team: Any) -> dict[str, Any]:
    mine, theirs = make_patient(), make_patient()
    clinician, outsider = make_user("clinician"), make_user("clinician")
    name(db, clinician, "Dr Ada Lee")
    name(db, outsider, "Dr Sam Oduya")
    make_care_team([clinician], [mine, theirs])
    patient = make_user("patient", patient_id=mine)
    other = make_user("patient", patient_id=theirs)
    name(db, other, "Pat Other")
    return {
        "mine": mine,
        "theirs": theirs,
        "clinician": clinician,
        "outsider": outsider,
        "patient": patient,
        "other": other,
        "admin": make_user("admin"),
    }


def audit_count(db: psycopg.Connection, user: TestUser) -> int:
    row = db.execute("SELECT count(*) FROM audit_events WHERE actor_id = %s", (user.id,)).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_clinicians_reads_appear_with_name_and_role_and_another_patients_never(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    auth_headers: Callable[..., dict[str, str]],
    audit_rows: Callable[..., list[dict[str, Any]]],
    add_observations: Callable[..., None],
) -> None:
    mine, theirs = ward["mine"], ward["theirs"]
    add_observations(mine, "heart_rate", [(datetime.now(UTC) - timedelta(minutes=5), 72.0)])
    doctor = auth_headers(ward["clinician"])
    patient = auth_headers(ward["patient"])
    assert (await client.get(f"/api/v1/patients/{mine}/summary", headers=doctor)).status_code == 200
    observations = await client.get(
        f"/api/v1/patients/{mine}/observations", params={"metric": "heart_rate"}, headers=doctor
    )
    assert observations.status_code == 200
    # The same clinician reads the other patient; an outsider tries this patient and is refused.
    assert (await client.get(f"/api/v1/patients/{theirs}/summary", headers=doctor)).status_code == 200
    outsider = await client.get(f"/api/v1/patients/{mine}/summary", headers=auth_headers(ward["outsider"]))
    assert outsider.status_code == 404
    # The other patient pokes at this record: listed without their name.
    poke = await client.get(f"/api/v1/patients/{mine}/summary", headers=auth_headers(ward["other"]))
    assert poke.status_code == 404
    # My own reads are left out by default.
    assert (await client.get(f"/api/v1/patients/{mine}/summary", headers=patient)).status_code == 200

    response = await client.get(LOG, headers=patient)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [(i["who"]["name"], i["who"]["role"], i["what"], i["outcome"]) for i in items] == [
        ("Another patient", "patient", "your summary", "denied"),
        ("Dr Sam Oduya", "clinician", "your summary", "denied"),
        ("Dr Ada Lee", "clinician", "your heart rate readings", "allowed"),
        ("Dr Ada Lee", "clinician", "your summary", "allowed"),
    ]
    assert items[3]["sentence"] == "Dr Ada Lee (doctor or nurse) looked at your summary."
    assert items[0]["sentence"] == "Another patient tried to open your summary. We did not let them in."
    assert items[1]["sentence"] == "Dr Sam Oduya (doctor or nurse) tried to open your summary. We did not let them in."
    assert "Pat Other" not in response.text
    assert all(i["break_glass"] is False and i["break_glass_reason"] is None for i in items)
    # Not one event about the other patient, though the same clinician read them.
    theirs_ids = {e["id"] for e in audit_rows(patient_id=theirs)}
    assert theirs_ids
    assert not theirs_ids & {i["id"] for i in items}

    with_mine = (await client.get(LOG, params={"include_mine": "true"}, headers=patient)).json()["items"]
    assert [(i["who"]["name"], i["who"]["is_me"], i["what"]) for i in with_mine[:2]] == [
        ("You", True, "the list of who viewed your record"),
        ("You", True, "your summary"),
    ]
    # Filters: by role, by date range.
    admins = (await client.get(LOG, params={"role": "admin"}, headers=patient)).json()["items"]
    assert admins == []
    clinicians = (await client.get(LOG, params={"role": "clinician"}, headers=patient)).json()["items"]
    assert len(clinicians) == 3
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    future = (await client.get(LOG, params={"start": later}, headers=patient)).json()["items"]
    assert future == []


async def test_break_glass_access_shows_the_reason(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    auth_headers: Callable[..., dict[str, str]],
) -> None:
    mine = ward["mine"]
    outsider = auth_headers(ward["outsider"])
    grant = await client.post(
        f"/api/v1/patients/{mine}/break-glass", json={"reason": REASON, "duration_minutes": 15}, headers=outsider
    )
    assert grant.status_code == 201, grant.text
    assert (await client.get(f"/api/v1/patients/{mine}/summary", headers=outsider)).status_code == 200
    assert (await client.get(f"/api/v1/patients/{mine}/summary", headers=auth_headers(ward["clinician"]))).is_success

    patient = auth_headers(ward["patient"])
    emergency = (await client.get(LOG, params={"break_glass": "true"}, headers=patient)).json()["items"]
    assert [(i["who"]["name"], i["sentence"], i["break_glass_reason"]) for i in emergency] == [
        ("Dr Sam Oduya", "Dr Sam Oduya (doctor or nurse) looked at your summary.", REASON),
        ("Dr Sam Oduya", "Dr Sam Oduya (doctor or nurse) opened your record in an emergency.", REASON),
    ]
    everything = (await client.get(LOG, headers=patient)).json()["items"]
    assert [i["break_glass"] for i in everything] == [False, True, True]


async def test_reading_the_log_writes_exactly_one_audit_event(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    auth_headers: Callable[..., dict[str, str]],
    audit_rows: Callable[..., list[dict[str, Any]]],
    db: psycopg.Connection,
) -> None:
    patient = ward["patient"]
    headers = auth_headers(patient)
    before = audit_count(db, patient)
    assert (await client.get(LOG, params={"role": "clinician"}, headers=headers)).status_code == 200
    assert audit_count(db, patient) == before + 1
    event = audit_rows(actor_id=patient.id, resource="access_log")[-1]
    assert (event["patient_id"], event["action"], event["outcome"]) == (ward["mine"], "read", "allowed")
    assert event["detail"]["role"] == "clinician"
    # Any other role: 403, audited once too.
    clinician = ward["clinician"]
    before = audit_count(db, clinician)
    assert_problem(await client.get(LOG, headers=auth_headers(clinician)), 403, "role_not_allowed")
    assert audit_count(db, clinician) == before + 1


async def test_paging_with_the_cursor_continues_without_repeats(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    auth_headers: Callable[..., dict[str, str]],
    db: psycopg.Connection,
) -> None:
    mine, clinician = ward["mine"], ward["clinician"]
    # Seven reads, two of them at the same instant (the id breaks the tie).
    at = datetime.now(UTC) - timedelta(hours=2)
    times = [at + timedelta(minutes=m) for m in (0, 1, 2, 3, 3, 4, 5)]
    ids = [
        db.execute(
            "INSERT INTO audit_events (at, actor_id, actor_role, patient_id, action, resource, outcome) "
            "VALUES (%s, %s, 'clinician', %s, 'read', 'care_plan', 'allowed') RETURNING id",
            (ts, clinician.id, mine),
        ).fetchone()[0]  # type: ignore[index]
        for ts in times
    ]
    headers = auth_headers(ward["patient"])
    seen: list[int] = []
    pages = 0
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(LOG, params=params, headers=headers)).json()
        pages += 1
        seen += [i["id"] for i in page["items"]]
        assert all(i["what"] == "your care plan" for i in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(ids, key=lambda i: (times[ids.index(i)], i), reverse=True)
    assert_problem(await client.get(LOG, params={"cursor": "not-ours"}, headers=headers), 422, "validation_error")


async def test_a_patient_flags_only_their_own_record_and_the_privacy_officer_reviews(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    auth_headers: Callable[..., dict[str, str]],
    audit_rows: Callable[..., list[dict[str, Any]]],
) -> None:
    mine, theirs = ward["mine"], ward["theirs"]
    doctor = auth_headers(ward["clinician"])
    assert (await client.get(f"/api/v1/patients/{mine}/summary", headers=doctor)).is_success
    assert (await client.get(f"/api/v1/patients/{theirs}/summary", headers=doctor)).is_success
    patient = auth_headers(ward["patient"])
    [entry] = (await client.get(LOG, headers=patient)).json()["items"]
    assert entry["flag"] is None

    flagged = await client.post(
        f"{LOG}/{entry['id']}/flag", json={"note": "I do not know this doctor"}, headers=patient
    )
    assert flagged.status_code == 201, flagged.text
    flag = flagged.json()
    assert flag["state"] == "open"
    again = await client.post(f"{LOG}/{entry['id']}/flag", headers=patient)
    assert (again.status_code, again.json()["id"]) == (200, flag["id"])
    [shown] = (await client.get(LOG, headers=patient)).json()["items"]
    assert shown["flag"]["state"] == "open"

    # Someone else's event, or none at all: the same 404.
    [their_event] = [e["id"] for e in audit_rows(patient_id=theirs) if e["resource"] == "patient_summary"]
    for event_id in (their_event, 2**62):
        assert_problem(await client.post(f"{LOG}/{event_id}/flag", headers=patient), 404, "access_event_not_found")
    assert_problem(await client.post(f"{LOG}/{entry['id']}/flag", headers=doctor), 403, "role_not_allowed")

    # The queue: admins only.
    for user in ("clinician", "patient", "other"):
        assert_problem(await client.get(QUEUE, headers=auth_headers(ward[user])), 403, "role_not_allowed")
    admin = auth_headers(ward["admin"])
    queue = (await client.get(QUEUE, params={"state": "open"}, headers=admin)).json()["items"]
    [item] = [i for i in queue if i["id"] == flag["id"]]
    assert (item["patient_id"], item["note"], item["state"]) == (mine, "I do not know this doctor", "open")
    assert (item["event"]["id"], item["event"]["actor_name"], item["event"]["resource"]) == (
        entry["id"],
        "Dr Ada Lee",
        "patient_summary",
    )
    assert_problem(
        await client.post(f"{QUEUE}/{flag['id']}/review", json={"outcome_note": "x"}, headers=patient),
        403,
        "role_not_allowed",
    )
    answer = "Dr Lee covered your care team that night. This was allowed."
    reviewed = await client.post(f"{QUEUE}/{flag['id']}/review", json={"outcome_note": answer}, headers=admin)
    assert reviewed.status_code == 200, reviewed.text
    assert (reviewed.json()["state"], reviewed.json()["reviewed_by"]) == ("reviewed", str(ward["admin"].id))
    assert_problem(
        await client.post(f"{QUEUE}/{flag['id']}/review", json={"outcome_note": answer}, headers=admin),
        409,
        "privacy_flag_already_reviewed",
    )
    assert_problem(
        await client.post(f"{QUEUE}/{2**62}/review", json={"outcome_note": answer}, headers=admin),
        404,
        "privacy_flag_not_found",
    )
    review_events = [e for e in audit_rows(actor_id=ward["admin"].id) if e["resource"] == "privacy_flag"]
    assert [(e["action"], e["outcome"], e["patient_id"]) for e in review_events] == [
        ("review", "allowed", mine),
        ("review", "denied", mine),
        ("review", "denied", None),
    ]

    # The patient sees the outcome, and the review itself on their log.
    items = (await client.get(LOG, headers=patient)).json()["items"]
    [seen] = [i for i in items if i["id"] == entry["id"]]
    assert (seen["flag"]["state"], seen["flag"]["outcome_note"]) == ("reviewed", answer)
    assert items[0]["what"] == "your note about a visit you did not know"
    # Reviewed flags follow the open ones in the queue.
    listed = (await client.get(QUEUE, params={"limit": 200}, headers=admin)).json()["items"]
    states = [i["state"] for i in listed]
    assert states == sorted(states, key=lambda s: s != "open")
    assert flag["id"] in [i["id"] for i in listed if i["state"] == "reviewed"]


def use(client: httpx.AsyncClient, cookies: dict[str, str]) -> None:
    """The page session of one user (cookies on the client: per-request cookies are deprecated)."""
    client.cookies.clear()
    for key, value in cookies.items():
        client.cookies.set(key, value)


async def test_the_page_shows_the_log_and_flags_with_csrf(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    auth_headers: Callable[..., dict[str, str]],
    audit_rows: Callable[..., list[dict[str, Any]]],
    db: psycopg.Connection,
) -> None:
    mine, theirs = ward["mine"], ward["theirs"]
    doctor = auth_headers(ward["clinician"])
    assert (await client.get(f"/api/v1/patients/{mine}/care-plan", headers=doctor)).is_success
    assert (await client.get(f"/api/v1/patients/{theirs}/care-plan", headers=doctor)).is_success
    assert (await client.get(f"/api/v1/patients/{mine}/summary", headers=doctor)).is_success
    assert (await client.get(f"/api/v1/patients/{mine}/summary", headers=doctor)).is_success
    token = auth_headers(ward["patient"])["Authorization"].removeprefix("Bearer ")
    csrf = "c" * 32
    cookies = {"rpm_session": token, "rpm_csrf": csrf}
    use(client, cookies)
    before = audit_count(db, ward["patient"])
    page = await client.get("/me/access-log")
    assert page.status_code == 200
    # One visit, one card: the same person reading several parts within minutes.
    assert page.text.count("Dr Ada Lee (doctor or nurse) looked at your summary and your care plan.") == 1
    assert page.text.count('class="access-sentence"') == 1
    assert audit_count(db, ward["patient"]) == before + 1
    bad = await client.get("/me/access-log", params={"from": "2025-13-01"})
    assert (bad.status_code, "Please write the dates like" in bad.text) == (200, True)

    [event] = [e["id"] for e in audit_rows(patient_id=mine) if e["resource"] == "care_plan"]
    [their_event] = [e["id"] for e in audit_rows(patient_id=theirs) if e["resource"] == "care_plan"]
    forged = await client.post(f"/me/access-log/{event}/flag", data={"csrf": "x" * 32})
    assert forged.status_code == 403
    foreign = await client.post(f"/me/access-log/{their_event}/flag", data={"csrf": csrf})
    assert foreign.status_code == 404
    sent = await client.post(f"/me/access-log/{event}/flag", data={"csrf": csrf, "note": " "})
    assert (sent.status_code, sent.headers["location"]) == (303, f"/me/access-log?flagged={event}#entry-{event}")
    flags = db.execute("SELECT note, state FROM privacy_flags WHERE audit_event_id = %s", (event,)).fetchall()
    assert flags == [(None, "open")]

    # More than a page (20): an older page by the cursor, and the way back.
    db.execute(
        "INSERT INTO audit_events (actor_id, actor_role, patient_id, action, resource, outcome) "
        "SELECT %s, 'clinician', %s, 'read', 'device', 'allowed' FROM generate_series(1, 25)",
        (ward["clinician"].id, mine),
    )
    first = await client.get("/me/access-log")
    older = re.search(r'href="(/me/access-log\?cursor=[^"]+)"', first.text)
    assert older is not None
    second = await client.get(older.group(1))
    assert second.status_code == 200
    assert "Back to the newest" in second.text
    assert "looked at your devices" in second.text

    doctor_cookies = {"rpm_session": doctor["Authorization"].removeprefix("Bearer "), "rpm_csrf": csrf}
    use(client, doctor_cookies)
    refused = await client.get("/me/access-log")
    assert (refused.status_code, "This page is for patients." in refused.text) == (403, True)


async def test_role_by_route_matrix_every_request_audited_once(
    client: httpx.AsyncClient,
    ward: dict[str, Any],
    make_user: Any,
    auth_headers: Callable[..., dict[str, str]],
    audit_rows: Callable[..., list[dict[str, Any]]],
    db: psycopg.Connection,
) -> None:
    mine = ward["mine"]
    assert (await client.get(f"/api/v1/patients/{mine}/summary", headers=auth_headers(ward["clinician"]))).is_success
    [event] = [e["id"] for e in audit_rows(patient_id=mine) if e["resource"] == "patient_summary"]
    flag = await client.post(f"{LOG}/{event}/flag", headers=auth_headers(ward["patient"]))
    assert flag.status_code == 201
    flag_id = flag.json()["id"]
    users = {role: ward[role] for role in ("admin", "clinician", "outsider", "patient", "other")} | {
        "ops": make_user("ops")
    }
    # route -> the status each role gets (everyone else: 403)
    routes: list[tuple[str, str, dict[str, Any] | None, dict[str, int]]] = [
        ("GET", LOG, None, {"patient": 200, "other": 200}),
        ("POST", f"{LOG}/{event}/flag", {"note": "again"}, {"patient": 200, "other": 404}),
        ("GET", QUEUE, None, {"admin": 200}),
        ("POST", f"{QUEUE}/{flag_id}/review", {"outcome_note": "Checked: allowed."}, {"admin": 200}),
    ]
    leaks: list[int] = []
    for method, path, body, allowed in routes:
        for role, user in users.items():
            before = audit_count(db, user)
            response = await client.request(method, path, json=body, headers=auth_headers(user))
            expected = allowed.get(role, 403)
            assert response.status_code == expected, (method, path, role, response.text)
            assert audit_count(db, user) == before + 1, (method, path, role)
            if response.status_code == 200 and path == LOG and role == "other":
                # The other patient's own log: not one event of this record.
                leaks += [item["id"] for item in response.json()["items"] if item["id"] == event]
    assert leaks == []
