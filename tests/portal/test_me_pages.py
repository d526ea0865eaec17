"""The patient's pages over HTTP (in-process app, real database): who gets them, the lesson form
(CSRF-checked, answers marked on the server), a lesson that does not exist; and the lessons
that fit a care plan (pure)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import time

import httpx
import psycopg
import pytest

from api.portal.learn import ANSWERS, CONDITIONS, check_answers, conditions_of
from core.careplan import CarePlan, HfWeightGain, Limit, MeasurementSchedule, News2Settings
from core.rules import Rule
from tests.api.conftest import TestUser
from tests.ui.test_page_session import form_csrf, page_login


@pytest.mark.anyio
async def test_pages_for_a_patient_and_not_for_staff(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    make_user: Callable[..., TestUser],
    make_patient: Callable[[], str],
) -> None:
    assert (await client.get("/me")).headers["location"] == "/"  # no session: log in first
    patient = make_user("patient", patient_id=make_patient())
    assert (await page_login(client, patient)).headers["location"] == "/me"
    health = await client.get("/me")
    assert health.status_code == 200
    assert "We have no readings from you in the last 7 days." in health.text
    assert 'aria-current="page">My health</a>' in health.text
    assert "Your care team sees them too." in health.text
    # Sharing withdrawn (ADR 0024): the page no longer says the care team sees the readings.
    db.execute(
        "INSERT INTO consents (patient_id, scope, granted_at, withdrawn_at) "
        "VALUES (%s, 'share_care_team', now() - interval '1 hour', now())",
        (patient.patient_id,),
    )
    not_shared = await client.get("/me")
    assert "You chose not to share them with your care team" in not_shared.text
    assert "Your care team sees them too." not in not_shared.text
    plan = await client.get("/me/care-plan")
    assert plan.status_code == 200
    assert "Your care team has not made a plan for you yet." in plan.text
    assert (await client.get("/me/learn")).status_code == 200
    assert (await client.get("/me/learn/gout")).status_code == 404

    lesson = await client.get("/me/learn/copd")
    assert lesson.status_code == 200
    assert "Living with COPD" in lesson.text
    forged = await client.post("/me/learn/copd", data={"csrf": "x" * 43, "q1": "b"})
    assert forged.status_code == 403
    marked = await client.post("/me/learn/copd", data={"csrf": form_csrf(lesson.text), "q1": "b", "q2": "a", "q3": "a"})
    assert marked.status_code == 200
    assert "You got 3 of 3 right. Well done." in marked.text
    events = db.execute(
        "SELECT resource FROM audit_events WHERE actor_id = %s AND action = 'read' ORDER BY id", (patient.id,)
    ).fetchall()
    assert [r[0] for r in events] == ["patient_summary", "patient_summary", "care_plan"]  # lessons read none

    await client.post("/logout", data={"csrf": form_csrf(marked.text)})
    clinician = make_user("clinician")
    await page_login(client, clinician)
    for path in ("/me", "/me/care-plan", "/me/learn/copd"):
        page = await client.get(path)
        assert page.status_code == 403
        assert "These pages are for patients" in page.text


def test_lessons_that_fit_a_plan() -> None:
    assert conditions_of(CarePlan(patient_id="p")) == []
    plan = CarePlan(
        patient_id="p",
        hf_weight=HfWeightGain(enabled=True),
        news2=News2Settings(spo2_scale=2),
        measurements=(
            MeasurementSchedule(metric="bp_systolic", times_of_day=(time(8),)),
            MeasurementSchedule(metric="glucose", times_per_day=2),
        ),
    )
    assert conditions_of(plan) == ["heart_failure", "copd", "hypertension", "diabetes"]
    bp_limit = Limit(rule=Rule.HEART_RATE_HIGH, metric="bp_systolic", direction="high", raise_at=160, clear_at=150)
    assert conditions_of(CarePlan(patient_id="p", limits=(bp_limit,))) == ["hypertension"]


def test_answers_are_marked_with_words() -> None:
    for condition in CONDITIONS:
        right = {f"q{n}": answer for n, answer in ANSWERS[condition].items()}
        assert check_answers(condition, right).right == len(ANSWERS[condition])
    marked = check_answers("diabetes", {"q1": "a", "q2": "a", "q3": "zzz"})
    assert [f.right for f in marked.feedback] == [True, False, False]
    assert marked.feedback[0].words.startswith("Right.")
    assert marked.feedback[1].words.startswith("Not quite.")
    assert marked.feedback[2].words.startswith("You did not pick an answer for this one.")
    assert marked.summary.startswith("You got 1 of 3 right.")
