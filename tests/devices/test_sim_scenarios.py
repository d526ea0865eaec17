"""Scenario ground truth against the vitals the simulator itself recorded (no broker):
the same seed gives the same readings, and each scenario's expectation matches its data."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sim_support import dry_run

from core.catalogue import CATALOGUE
from core.wire import payload_decoder
from devices.simulator.clinical import LowLimitEpisode
from devices.simulator.groundtruth import read_records


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def records(path: Path, kind: str) -> list[dict[str, Any]]:
    return [r for r in read_records(path) if r["kind"] == kind]


def vitals_by_time(path: Path, device_id: str) -> list[tuple[float, dict[str, float]]]:
    out = []
    for m in records(path, "msg"):
        if m["device_id"] == device_id:
            by_ts: dict[str, dict[str, float]] = {}
            for r in m["readings"]:
                by_ts.setdefault(r["ts"], {})[r["metric"]] = r["value"]
            out += [(ts(t), v) for t, v in by_ts.items()]
    return sorted(out, key=lambda x: x[0])


# NEWS2 per shared/reference/clinical.md, written here independently of the simulator.
def news2(v: dict[str, float], *, scale: int, oxygen: bool) -> int:
    rr, s, hr, t = round(v["resp_rate"]), round(v["spo2"]), round(v["heart_rate"]), round(v["body_temp"], 1)
    score = 3 if rr <= 8 else 1 if rr <= 11 else 0 if rr <= 20 else 2 if rr <= 24 else 3
    if scale == 1:
        score += 3 if s <= 91 else 2 if s <= 93 else 1 if s <= 95 else 0
    else:
        score += (
            3
            if s <= 83
            else 2
            if s <= 85
            else 1
            if s <= 87
            else 0
            if s <= 92 or not oxygen
            else 1
            if s <= 94
            else 2
            if s <= 96
            else 3
        )
    score += 2 if oxygen else 0
    score += 3 if hr <= 40 else 1 if hr <= 50 else 0 if hr <= 90 else 1 if hr <= 110 else 2 if hr <= 130 else 3
    score += 3 if t <= 35.0 else 1 if t <= 36.0 else 0 if t <= 38.0 else 1 if t <= 39.0 else 2
    return score


def test_news2_reference_points() -> None:
    base = {"resp_rate": 16, "spo2": 97, "heart_rate": 70, "body_temp": 37.0}
    assert news2(base, scale=1, oxygen=False) == 0
    assert news2({**base, "resp_rate": 25}, scale=1, oxygen=False) == 3
    assert news2({**base, "spo2": 93}, scale=1, oxygen=False) == 2
    assert news2({**base, "spo2": 93}, scale=2, oxygen=True) == 1 + 2
    assert news2({**base, "heart_rate": 111, "body_temp": 39.1}, scale=1, oxygen=False) == 4


def test_same_seed_same_readings_and_another_seed_differs(tmp_path: Path) -> None:
    mix = {"healthy": 0.4, "copd": 0.2, "heart_failure": 0.2, "diabetes": 0.2}
    a = dry_run(tmp_path, "a", patients=12, cohorts=mix, seed=7, speed=600, scenarios=("sepsis", "hypoglycaemia"))
    b = dry_run(tmp_path, "b", patients=12, cohorts=mix, seed=7, speed=600, scenarios=("sepsis", "hypoglycaemia"))
    c = dry_run(tmp_path, "c", patients=12, cohorts=mix, seed=8, speed=600, scenarios=("sepsis", "hypoglycaemia"))
    msgs_a, msgs_b, msgs_c = (records(p, "msg") for p in (a, b, c))
    assert len(msgs_a) > 100
    assert msgs_a == msgs_b
    assert [m["readings"] for m in msgs_a] != [m["readings"] for m in msgs_c]
    assert records(a, "scenario") == records(b, "scenario")


def test_worker_split_does_not_change_the_readings(tmp_path: Path) -> None:
    one = dry_run(tmp_path, "one", patients=9, cohorts={"heart_failure": 1.0}, speed=300)
    two = dry_run(tmp_path, "two", patients=9, cohorts={"heart_failure": 1.0}, speed=300, workers=2)
    key = lambda m: (m["device_id"], m["seq"])  # noqa: E731
    assert sorted(records(one, "msg"), key=key) == sorted(records(two, "msg"), key=key)


def test_payloads_follow_the_wire_contract(tmp_path: Path) -> None:
    mix = {"healthy": 0.2, "copd": 0.2, "heart_failure": 0.2, "hypertension": 0.2, "diabetes": 0.2}
    gt = dry_run(tmp_path, "wire", patients=30, cohorts=mix, speed=2880, duration=60)  # two days
    last_seq: dict[str, int] = {}
    metrics_seen = set()
    for m in records(gt, "msg"):
        raw = dict(m)
        raw.pop("kind")
        raw.pop("patient_id")
        import msgspec

        payload = payload_decoder.decode(msgspec.json.encode(raw))
        assert payload.seq == last_seq.get(payload.device_id, 0) + 1
        last_seq[payload.device_id] = payload.seq
        assert payload.battery is not None
        assert 0.0 <= payload.battery <= 1.0
        for r in payload.readings:
            spec = CATALOGUE[r.metric]
            canonical = spec.normalise(r.value, r.unit)
            assert canonical is not None, f"{r.unit} not accepted for {r.metric}"
            assert spec.plausible(canonical), (r.metric, canonical)
            metrics_seen.add(r.metric)
            if spec.is_event:
                assert r.dose_id
    assert metrics_seen == {name for name, spec in CATALOGUE.items() if not spec.entered}  # devices measure


def test_sepsis_reaches_news2_high_in_its_own_recorded_vitals(tmp_path: Path) -> None:
    gt = dry_run(
        tmp_path, "sepsis", patients=6, seed=3, speed=360, interval=0.5, duration=130, scenarios=("sepsis:start=30m",)
    )
    (scenario,) = records(gt, "scenario")
    assert "news2_high" in scenario["expect_from_readings"]
    patient = next(p for p in records(gt, "patient") if p["patient_id"] == scenario["patient_id"])
    expected = {e["rule"]: e for e in records(gt, "expect") if e["cause"] == "sepsis"}
    assert all(e["patient_id"] == scenario["patient_id"] for e in expected.values())
    vitals = vitals_by_time(gt, scenario["device_ids"][0])
    scores = [(t, news2(v, scale=patient["news2_scale"], oxygen=patient["on_oxygen"])) for t, v in vitals]
    start = ts(scenario["start"])
    before = [s for t, s in scores if t < start]
    first_high = next(t for t, s in scores if s >= 7)
    assert max(before) < 5
    assert max(s for _, s in scores) >= 7
    assert scenario["news2_peak"] >= 7
    # The expectation is the first recorded reading time that scores 7 (this patient has only
    # the wearable, so every NEWS2 parameter comes from it, in order).
    assert start < first_high == ts(expected["news2_high"]["at"])
    first_medium = next(t for t, s in scores if s >= 5)
    if first_medium < first_high:
        assert ts(expected["news2_medium"]["at"]) == first_medium


def test_hypoxia_expectation_matches_recorded_spo2(tmp_path: Path) -> None:
    gt = dry_run(
        tmp_path,
        "hypoxia",
        patients=4,
        speed=60,
        interval=0.5,
        duration=60,
        scenarios=("hypoxia:start=5m,duration=20m",),
    )
    (scenario,) = records(gt, "scenario")
    assert scenario["expect_from_readings"] == ["spo2_low"]
    (exp,) = [e for e in records(gt, "expect") if e["cause"] == "hypoxia"]
    assert exp["rule"] == "spo2_low"
    assert exp["patient_id"] == scenario["patient_id"]
    threshold = scenario["threshold"]
    vitals = [(t, v["spo2"]) for t, v in vitals_by_time(gt, scenario["device_ids"][0]) if t >= ts(scenario["start"])]
    low = [t for t, v in vitals if v < threshold]
    assert low
    assert low[-1] - low[0] >= 600  # below the threshold for at least the 10 min the rule needs
    # Raised at the first reading below the limit 10 min or more after the episode began (no
    # reading back at the clear level, 2 points above, in between).
    begun = low[0]
    for t, v in vitals:
        if begun < t and v >= threshold + 2 and t < ts(exp["at"]):
            begun = next(x for x in low if x > t)
    assert ts(exp["at"]) == next(t for t in low if t - begun >= 600)
    assert exp["values"]["spo2"] < threshold


@pytest.mark.parametrize("confirmed", [True, False])
def test_hypertensive_reading_and_its_repeat(tmp_path: Path, confirmed: bool) -> None:
    gt = dry_run(
        tmp_path,
        f"bp{confirmed}",
        patients=3,
        cohorts={"hypertension": 1.0},
        speed=60,
        scenarios=(f"hypertensive:start=10m,confirmed={str(confirmed).lower()}",),
    )
    (scenario,) = records(gt, "scenario")
    cuff = scenario["device_ids"][0]
    readings = [(t, v) for t, v in vitals_by_time(gt, cuff) if t >= ts(scenario["start"])]
    first, repeat = readings[0][1], readings[1][1]
    assert first["bp_systolic"] >= 180
    assert first["bp_diastolic"] >= 120
    rules = {e["rule"]: e for e in scenario["expect"]}
    assert "bp_crisis_unconfirmed" in rules
    if confirmed:
        assert repeat["bp_systolic"] >= 180
        assert repeat["bp_diastolic"] >= 120
        assert not rules["bp_crisis_confirmed"].get("absent")
    else:
        assert repeat["bp_systolic"] < 180
        assert repeat["bp_diastolic"] < 120
        assert rules["bp_crisis_confirmed"]["absent"] is True


def test_hypoglycaemia_reading_is_in_the_expected_band(tmp_path: Path) -> None:
    gt = dry_run(
        tmp_path,
        "hypo",
        patients=3,
        cohorts={"diabetes": 1.0},
        speed=120,
        scenarios=("hypoglycaemia:start=20m,level=2", "hypoglycaemia:start=20m,level=1"),
    )
    for scenario in records(gt, "scenario"):
        (exp,) = scenario["expect"]
        glucose = [v["glucose"] for t, v in vitals_by_time(gt, scenario["device_ids"][0]) if t == ts(exp["at"])]
        assert len(glucose) == 1
        value = glucose[0] * (18.016 if glucose[0] < 30 else 1.0)  # some meters report mmol/L
        assert (value < 54) == (exp["rule"] == "glucose_low_l2")
        assert value < 70


def test_heart_failure_fluid_retention_gains_weight(tmp_path: Path) -> None:
    gt = dry_run(
        tmp_path,
        "hf",
        patients=2,
        cohorts={"heart_failure": 1.0},
        speed=86400 / 10,
        duration=60,
        scenarios=("hf_fluid:start=1d,gain_kg=3",),
    )
    (scenario,) = records(gt, "scenario")
    weights = [v["body_weight"] for _, v in vitals_by_time(gt, scenario["device_ids"][0])]
    weights = [w * 0.45359237 if w > 250 else w for w in weights]
    assert len(weights) >= 5
    assert max(weights[3:]) - min(weights[:2]) > 2.0
    assert any(e["rule"] == "hf_weight_gain_7d" and not e.get("absent") for e in scenario["expect"])


def test_offline_device_queues_every_reading_as_it_is_taken(tmp_path: Path) -> None:
    gt = dry_run(
        tmp_path,
        "offline",
        patients=2,
        speed=60,
        interval=1.0,
        duration=90,
        scenarios=("offline:patient=#0,start=10m,duration=40m",),
    )
    (scenario,) = records(gt, "scenario")
    device = scenario["device_ids"][0]
    start, end = ts(scenario["start"]), ts(scenario["end"])
    msgs = [m for m in records(gt, "msg") if m["device_id"] == device]
    # Made (and stored in the outbox) at measurement time, one tick a message, while offline.
    offline = [m for m in msgs if start <= ts(m["sent_at"]) < end]
    assert len(offline) == 40  # one wearable sample per simulated minute
    assert all(len(m["readings"]) == 4 and ts(m["readings"][0]["ts"]) == ts(m["sent_at"]) for m in offline)
    assert [m["seq"] for m in msgs] == list(range(1, len(msgs) + 1))
    times = [ts(m["sent_at"]) for m in msgs]
    assert times == sorted(times)
    actions = [r["action"] for r in records(gt, "device") if r["device_id"] == device]
    assert actions == ["offline_start", "offline_end"]
    rules = {e.get("rule") for e in scenario["expect"]}
    assert {"device_silent_warn", "device_silent_urgent"} <= rules


def test_missed_doses_are_not_sent_and_are_expected(tmp_path: Path) -> None:
    gt = dry_run(
        tmp_path,
        "doses",
        patients=2,
        cohorts={"heart_failure": 1.0},
        speed=86400 / 20,
        duration=60,
        scenarios=("missed_doses:patient=#0,start=1d,duration=1d",),
    )
    (scenario,) = records(gt, "scenario")
    bottle = scenario["device_ids"][0]
    (plan,) = [p["care_plan"] for p in records(gt, "patient") if p["patient_id"] == scenario["patient_id"]]
    (medication,) = plan["medications"]
    taken = [r for m in records(gt, "msg") if m["device_id"] == bottle for r in m["readings"]]
    assert len(taken) >= 2
    assert {r["dose_id"] for r in taken} == {medication["dose_id"]}  # what the care plan schedules
    missed = [e for e in records(gt, "event") if e["device_id"] == bottle and e["cause"] == "missed_doses"]
    assert len(missed) == 2  # two scheduled doses a day
    scheduled = sorted(ts(e["scheduled"]) for e in missed)
    assert scheduled == sorted(x["scheduled_at"] for x in scenario["expect"])
    window = medication["window_s"]
    assert window == 7200
    assert not [r for r in taken if any(abs(ts(r["ts"]) - s) <= window for s in scheduled)]
    assert all(e["expect"][0]["rule"] == "dose_missed" for e in missed)


def test_clock_skew_and_battery_drain(tmp_path: Path) -> None:
    gt = dry_run(
        tmp_path,
        "skew",
        patients=2,
        speed=60,
        interval=1.0,
        duration=90,
        scenarios=(
            "clock_skew:patient=#0,start=10m,duration=20m,offset=10m",
            "battery_drain:patient=#1,start=5m,hours=1",
        ),
    )
    skew, drain = sorted(records(gt, "scenario"), key=lambda s: s["scenario"])[::-1]
    skewed = [m for m in records(gt, "msg") if m["device_id"] == skew["device_ids"][0]]
    shifted = [m for m in skewed if ts(skew["start"]) + 600 <= ts(m["sent_at"]) < ts(skew["end"]) + 600]
    assert shifted
    assert skew["expect"][0]["reason"] == "future_timestamp"
    drained = [m for m in records(gt, "msg") if m["device_id"] == drain["device_ids"][0]]
    batteries = [m["battery"] for m in drained if ts(m["sent_at"]) >= ts(drain["start"])]
    assert batteries == sorted(batteries, reverse=True)
    assert batteries[-1] <= 0.05
    assert max(ts(m["sent_at"]) for m in drained) < ts(drain["end"])


def test_heart_failure_plus_2_kg_in_3_days_expects_the_3_day_rule_from_recorded_weights(tmp_path: Path) -> None:
    gt = dry_run(
        tmp_path,
        "hf3",
        patients=3,
        cohorts={"heart_failure": 1.0},
        speed=86400 / 6,
        duration=60,
        seed=5,
        scenarios=("hf_fluid:patients=3,start=2d,gain_kg=2.3,days=3",),
    )
    plans = {p["patient_id"]: p["care_plan"] for p in records(gt, "patient")}
    seen_3d = 0
    for scenario in records(gt, "scenario"):
        assert plans[scenario["patient_id"]]["hf_weight"]["gain_3d_kg"] == 2.0
        weights = [
            (t, CATALOGUE["body_weight"].normalise(v["body_weight"], unit))
            for t, v, unit in weighings(gt, scenario["device_ids"][0])
        ]
        rules = {e["rule"]: e for e in scenario["expect"] if not e.get("absent")}
        if "hf_weight_gain_3d" not in rules:
            continue
        seen_3d += 1
        at = ts(rules["hf_weight_gain_3d"]["at"])
        (now,) = [w for t, w in weights if t == pytest.approx(at, abs=0.01)]
        window = [w for t, w in weights if at - 3 * 86400 - 3 * 3600 <= t < at]
        assert now is not None
        assert round(now - min(w for w in window if w is not None), 3) >= 2.0  # the recorded gain
        earlier = [t for t, w in weights if ts(scenario["start"]) <= t < at]
        for t in earlier:  # and no earlier weighing of the scenario reached it
            w = next(x for s, x in weights if s == t)
            base = [x for s, x in weights if t - 3 * 86400 - 3 * 3600 <= s < t]
            assert w is not None
            assert not base or round(w - min(x for x in base if x is not None), 3) < 2.0
    assert seen_3d >= 2


def weighings(path: Path, device_id: str) -> list[tuple[float, dict[str, float], str]]:
    out = []
    for m in records(path, "msg"):
        if m["device_id"] == device_id:
            for r in m["readings"]:
                out.append((ts(r["ts"]), {r["metric"]: r["value"]}, r["unit"]))
    return sorted(out, key=lambda x: x[0])


def test_low_limit_episode_follows_the_dead_band_and_the_gap() -> None:
    def first_raise(trace: list[tuple[float, float]], **kw: float) -> float | None:
        ep = LowLimitEpisode(raise_at=90, clear_at=92, sustained_s=600, **kw)  # type: ignore[arg-type]
        hits = [t for t, v in trace if ep.observe(t, v)]
        assert len(hits) <= 1  # raises once
        return hits[0] if hits else None

    # 89/91 oscillation: the dead band neither ends nor counts; raised once, 10 min after the start.
    assert first_raise([(60.0 * i, 89.0 if i % 2 == 0 else 91.0) for i in range(30)]) == 600.0
    # A value at the clear level ends the pending episode: it starts again at the next low value.
    trace = [(0.0, 88.0), (300.0, 92.0)] + [(60.0 * i, 88.0) for i in range(6, 30)]
    assert first_raise(trace) == 360.0 + 600.0
    # No low value for longer than the gap: the next low value starts a new episode.
    trace = [(0.0, 88.0), (120.0, 91.0), (500.0, 91.0), (800.0, 88.0), (1300.0, 88.0), (1400.0, 88.0)]
    assert first_raise(trace, max_gap_s=600) == 1400.0
    # Enough time but too few values below: the repeat count holds it back.
    assert first_raise([(0.0, 88.0), (700.0, 88.0), (800.0, 88.0)], repeat=3, max_gap_s=1000) == 800.0


def test_a_missed_slot_kept_by_a_scenario_reading_expects_no_miss(tmp_path: Path) -> None:
    # Glucometer slots at 07:15 and 09:00 (+/- 1 h); each patient's hypoglycaemia reading comes
    # at 07:20, so wherever the 07:15 measurement itself is missed, the platform counts that
    # reading for the slot (the nearest one) and raises no `measurement_missed`.
    gt = dry_run(
        tmp_path,
        "kept",
        patients=40,
        cohorts={"diabetes": 1.0},
        seed=5,
        speed=2880,
        duration=60,
        scenarios=("hypoglycaemia:patients=40,start=405m",),
    )
    plan_hours = {"glucometer": (7.25, 9.0, 14.0)}
    meters = {d["device_id"] for p in records(gt, "patient") for d in p["devices"] if d["device_class"] == "glucometer"}
    taken: dict[str, list[float]] = {}
    for m in records(gt, "msg"):
        if m["device_id"] in meters:
            taken.setdefault(m["device_id"], []).append(ts(m["readings"][0]["ts"]))
    kept = expected = 0
    for e in records(gt, "event"):
        if e["device_id"] not in meters or e["event"] != "measurement_missed":
            continue
        slot = ts(e["scheduled"])
        day = slot - slot % 86400
        slots = [day + h * 3600 for h in plan_hours["glucometer"]]
        counted = [
            t
            for t in taken.get(e["device_id"], [])
            if abs(t - slot) <= 3600 and min(slots, key=lambda s: abs(s - t)) == slot
        ]
        if counted:
            kept += 1
            assert e["expect"] == [], e
        else:
            expected += 1
            assert [x["rule"] for x in e["expect"]] == ["measurement_missed"]
    assert kept >= 1, "no slot kept by a scenario reading: the case this test is about"
    assert expected >= 1
