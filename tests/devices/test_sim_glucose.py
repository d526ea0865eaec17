"""Diabetes physiology: mealtime insulin doses lower glucose, missed ones leave it high, and
the ground truth expects exactly the glucose detections the recorded readings imply."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sim_support import dry_run

from core.catalogue import CATALOGUE
from devices.simulator.groundtruth import read_records
from devices.simulator.provisioning import plan_population

DAY = 86400.0
POST_MEAL_HOURS = (9.0, 14.0, 20.0)  # the glucometer's slots 1.5 h after each meal


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def glucose_readings(path: Path) -> dict[str, list[tuple[float, float]]]:
    """patient -> [(time, mg/dL as the platform normalises it)], in time order."""
    out: dict[str, list[tuple[float, float]]] = {}
    for m in read_records(path):
        if m["kind"] == "msg":
            for r in m["readings"]:
                if r["metric"] == "glucose":
                    value = CATALOGUE["glucose"].normalise(r["value"], r["unit"])
                    assert value is not None
                    out.setdefault(m["patient_id"], []).append((ts(r["ts"]), value))
    return {p: sorted(v) for p, v in out.items()}


def implied_raises(readings: list[tuple[float, float]]) -> list[tuple[str, float]]:
    """ADA levels (< 70, < 54, > 250 mg/dL), one raise per level and episode; an episode ends
    after readings stayed in range for 15 min. Written here independently of the simulator."""
    out: list[tuple[str, float]] = []
    hypo: set[str] = set()
    hyper = False
    hypo_ok = hyper_ok = None
    for t, v in readings:
        level = "glucose_low_l2" if v < 54 else "glucose_low_l1" if v < 70 else "glucose_high" if v > 250 else None
        if level in ("glucose_low_l1", "glucose_low_l2"):
            hypo_ok = None
            if not hypo or (level == "glucose_low_l2" and level not in hypo):
                out.append((level, t))
                hypo.add(level)
        elif hypo:
            hypo_ok = t if hypo_ok is None else hypo_ok
            if t - hypo_ok >= 900:
                hypo, hypo_ok = set(), None
        if level == "glucose_high":
            hyper_ok = None
            if not hyper:
                out.append((level, t))
                hyper = True
        elif hyper:
            hyper_ok = t if hyper_ok is None else hyper_ok
            if t - hyper_ok >= 900:
                hyper, hyper_ok = False, None
    return out


def expected_raises(path: Path) -> dict[str, list[tuple[str, float]]]:
    out: dict[str, list[tuple[str, float]]] = {}
    for r in read_records(path):
        if r["kind"] == "expect" and r["rule"].startswith("glucose"):
            out.setdefault(r["patient_id"], []).append((r["rule"], ts(r["at"])))
        if r["kind"] == "scenario":
            for e in r["expect"]:
                if e.get("rule", "").startswith("glucose") and not e.get("absent"):
                    out.setdefault(r["patient_id"], []).append((e["rule"], ts(e["at"])))
    return {p: sorted(v, key=lambda x: x[1]) for p, v in out.items()}


def post_meal(readings: list[tuple[float, float]], day_from: float, day_to: float) -> dict[float, float]:
    return {
        t: v
        for t, v in readings
        if day_from <= t < day_to and min(abs((t % DAY) / 3600 - h) for h in POST_MEAL_HOURS) < 1.0
    }


def test_missed_doses_leave_post_meal_glucose_higher(tmp_path: Path) -> None:
    roster = plan_population(12, {"diabetes": 1.0}, 4)
    common: dict[str, Any] = {"roster": roster, "seed": 4, "speed": 86400 / 20, "duration": 60}
    missed = dry_run(tmp_path, "missed", scenarios=("missed_doses:patients=12,start=1d,duration=1d",), **common)
    taken = dry_run(tmp_path, "taken", **common)
    (scenario, *_) = [r for r in read_records(missed) if r["kind"] == "scenario"]
    day_from, day_to = ts(scenario["start"]), ts(scenario["end"])
    with_missed, with_taken = glucose_readings(missed), glucose_readings(taken)
    rises, hyper = [], 0
    for patient, readings in with_missed.items():
        after_missed = post_meal(readings, day_from, day_to)
        after_taken = post_meal(with_taken[patient], day_from, day_to)
        assert after_missed.keys() == after_taken.keys()  # same seed, same measurement times
        for t, v in after_missed.items():
            assert v >= after_taken[t] - 1.0, "an untreated meal cannot end lower"  # mmol/L rounding
            rises.append(v - after_taken[t])
        hyper += any(v > 250 for v in after_missed.values())
    assert len(rises) >= 12 * 3 - 6  # some glucometer readings are skipped (adherence)
    assert sum(rises) / len(rises) > 40  # the doses were doing their job
    assert hyper >= 2, "a missed mealtime dose should reach hyperglycaemia in some patients"
    assert all(v >= 70 for r in with_taken.values() for _, v in r), "treatment should not cause hypos here"


def test_ground_truth_expects_what_the_recorded_glucose_implies(tmp_path: Path) -> None:
    gt = dry_run(
        tmp_path,
        "week",
        patients=30,
        cohorts={"diabetes": 1.0},
        seed=9,
        speed=7 * 86400 / 60,
        duration=60,
        scenarios=("missed_doses:patients=5,start=2d,duration=1d", "hypoglycaemia:patient=#3,start=3d,level=2"),
    )
    readings = glucose_readings(gt)
    expected = expected_raises(gt)
    raised = {p: implied_raises(r) for p, r in readings.items()}
    assert {p: r for p, r in raised.items() if r} == expected
    rules = [rule for r in expected.values() for rule, _ in r]
    assert "glucose_high" in rules
    assert "glucose_low_l2" in rules  # the hypoglycaemia scenario, counted once
