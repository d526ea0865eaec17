"""The demo data of `make run`: each demo patient's care plan is where the API reads it
(`care_plans`) as well as on the care-plan topic, and a second start keeps both in step."""

from __future__ import annotations

import msgspec
import psycopg

from core.careplan import decode_care_plan, default_care_plan
from infra.demo import DEMO_PATIENTS, ensure_demo_data
from infra.stack import Stack


def _stored(db: psycopg.Connection) -> dict[str, tuple[int, dict[str, object]]]:
    rows = db.execute(
        "SELECT patient_id, version, plan FROM care_plans WHERE patient_id = ANY(%s)",
        ([p.patient_id for p in DEMO_PATIENTS],),
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def test_demo_care_plans_are_stored_for_the_api(stack: Stack, db: psycopg.Connection) -> None:
    ensure_demo_data(stack)
    first = _stored(db)
    assert set(first) == {p.patient_id for p in DEMO_PATIENTS}
    for patient_id, (_, plan) in first.items():
        decoded = decode_care_plan(msgspec.json.encode(plan))
        assert decoded.patient_id == patient_id
    # The plans are the cohorts' plans, not the default one: the heart-failure patient with a
    # scale and a pill bottle has a weight schedule and medications (the default plan has none).
    hf = next(p.patient_id for p in DEMO_PATIENTS if p.cohort == "heart_failure")
    hf_plan = decode_care_plan(msgspec.json.encode(first[hf][1]))
    assert [m.metric for m in hf_plan.measurements] == ["body_weight"]
    assert hf_plan.medications
    assert not default_care_plan(hf).medications

    ensure_demo_data(stack)
    second = _stored(db)
    assert {pid: v for pid, (v, _) in second.items()} == {pid: v + 1 for pid, (v, _) in first.items()}
