"""Detection through the real broker and database: reading records produced to
`rpm.readings.v1` (as the bridge would), the stack's Faust worker, detections read back from
`rpm.detections.v1`. Expected detections are checked against the pure detectors fed the same
records one at a time (ground truth), so batching, state saving and replays may change nothing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time

import msgspec
import numpy as np
import psycopg

from core.careplan import Limit, MeasurementSchedule, default_care_plan, encode_care_plan
from core.detectors.model import DetectionKind, detection_id, iso
from core.rules import Rule
from core.wire import CARE_PLANS, REJECTED, DetectionRecord, Reading, RejectedMessage, rejected_decoder
from infra.stack import Stack
from tests.streams.support import (
    DetectionLog,
    batch,
    ground_truth,
    healthy_records,
    metric_samples,
    minutes,
    produce,
    read_topic,
    rules,
    send_batches,
)


def pid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def spo2_records(t0: datetime, values: Sequence[float]) -> list[list[Reading]]:
    return [[Reading("spo2", v, minutes(t0, i))] for i, v in enumerate(values)]


def ids(records: list[DetectionRecord]) -> list[str]:
    return [r.detection_id for r in records]


def test_hypoxic_episode_raises_spo2_low_once_and_a_replay_adds_nothing(worker: Stack) -> None:
    patient = pid("hypoxic")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=40)
    # 5 min normal, 16 min at 87 % (raises after 10 min), 15 min at 95 % (clears after 10 min).
    records = spo2_records(t0, [97] * 5 + [87] * 16 + [95] * 15)
    expected = ground_truth(patient, records)
    assert ("spo2_low", "raise") in [(r, k) for _, r, k in expected]
    assert ("spo2_low", "clear") in [(r, k) for _, r, k in expected]
    log = DetectionLog(worker.kafka_bootstrap, {patient})

    send_batches(worker.kafka_bootstrap, [batch(patient, rs, seq=i) for i, rs in enumerate(records)])
    got = log.wait_for(lambda rs: len(rs) >= len(expected), timeout=30)
    assert sorted(ids(got)) == sorted(i for i, _, _ in expected), rules(got)
    raised = next(r for r in got if r.rule is Rule.SPO2_LOW and r.kind == "raise")
    assert raised.episode_start == minutes(t0, 5)
    assert raised.detected_at == minutes(t0, 15)
    assert raised.evidence
    assert raised.received_at is not None
    assert raised.produced_at is not None
    assert raised.received_at <= raised.produced_at
    cleared = next(r for r in got if r.rule is Rule.SPO2_LOW and r.kind == "clear")
    assert cleared.clears == raised.detection_id

    # Replay every record (a producer retry, a bridge replay), then a probe on the same
    # partition: once the probe's detection is out, the replay has been judged.
    send_batches(worker.kafka_bootstrap, [batch(patient, rs, seq=i) for i, rs in enumerate(records)])
    send_batches(worker.kafka_bootstrap, [batch(patient, [Reading("glucose", 45, minutes(t0, 39))], seq=99)])
    got = log.wait_for(lambda rs: Rule.GLUCOSE_LOW_L2 in [r.rule for r in rs], timeout=30)
    assert rules(got, "raise").count("glucose_low_l2") == 1
    assert len(ids(got)) == len(set(ids(got))) == len(expected) + 1


def test_bp_crisis_is_confirmed_by_a_repeat_reading(worker: Stack) -> None:
    patient = pid("bp")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    records = [
        [Reading("bp_systolic", 185, t0), Reading("bp_diastolic", 125, t0)],
        [Reading("bp_systolic", 188, minutes(t0, 3)), Reading("bp_diastolic", 124, minutes(t0, 3))],
    ]
    expected = ground_truth(patient, records)
    log = DetectionLog(worker.kafka_bootstrap, {patient})
    send_batches(worker.kafka_bootstrap, [batch(patient, records[0], device_id="cuff", seq=1)])
    first = log.wait_for(lambda rs: len(rs) >= 1, timeout=30)
    assert rules(first) == ["bp_crisis_unconfirmed"]  # one high reading: re-measure, not an emergency
    send_batches(worker.kafka_bootstrap, [batch(patient, records[1], device_id="cuff", seq=2)])
    got = log.wait_for(lambda rs: "bp_crisis_confirmed" in rules(rs), timeout=30)
    assert sorted(ids(got)) == sorted(i for i, _, _ in expected)
    confirmed = next(r for r in got if r.rule is Rule.BP_CRISIS_CONFIRMED)
    assert confirmed.severity.value == "critical"


def test_quarantined_readings_never_reach_detection(worker: Stack) -> None:
    patient = pid("quarantine")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    hypoxic = spo2_records(t0, [85] * 15)
    send_batches(worker.kafka_bootstrap, [batch(patient, rs, seq=i, quarantined=True) for i, rs in enumerate(hypoxic)])
    send_batches(worker.kafka_bootstrap, [batch(patient, [Reading("glucose", 45, minutes(t0, 20))], seq=50)])
    log = DetectionLog(worker.kafka_bootstrap, {patient})
    # Same key, same partition: the glucose record is judged after the quarantined ones.
    got = log.wait_for(lambda rs: len(rs) >= 1, timeout=30)
    assert rules(log.read()) == ["glucose_low_l2"]
    assert len(got) == 1


def _care_plan_outcomes(worker: Stack) -> dict[str, float]:
    return metric_samples(worker.ports.streams_metrics, "rpm_streams_care_plans_total")


def test_care_plan_from_the_topic_sets_the_limits(worker: Stack) -> None:
    patient = pid("plan")
    default = default_care_plan(patient)
    strict_spo2 = Limit(rule=Rule.SPO2_LOW, metric="spo2", direction="low", raise_at=94, clear_at=96, repeat_count=2)
    limits = tuple(strict_spo2 if lim.rule is Rule.SPO2_LOW else lim for lim in default.limits)
    plan = msgspec.structs.replace(default, version=2, limits=limits)
    before = _care_plan_outcomes(worker)
    asyncio.run(
        produce(
            worker.kafka_bootstrap,
            [(patient, encode_care_plan(plan)), (patient, encode_care_plan(default_care_plan("someone-else")))],
            topic=CARE_PLANS.name,
        )
    )

    def applied() -> bool:
        now = _care_plan_outcomes(worker)
        return all(
            now.get(f'{{outcome="{o}"}}', 0) > before.get(f'{{outcome="{o}"}}', 0) for o in ("applied", "invalid")
        )

    deadline = time.monotonic() + 30
    while not applied() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert applied()

    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    records = spo2_records(t0, [93, 93, 93])  # no spo2_low by the default plan (< 90 raises)
    assert "spo2_low" not in [r for _, r, _ in ground_truth(patient, records)]
    expected = ground_truth(patient, records, plan)
    assert [r for _, r, _ in expected].count("spo2_low") == 1
    log = DetectionLog(worker.kafka_bootstrap, {patient})
    send_batches(worker.kafka_bootstrap, [batch(patient, rs, seq=i) for i, rs in enumerate(records)])
    got = log.wait_for(lambda rs: len(rs) >= len(expected), timeout=30)
    assert sorted(ids(got)) == sorted(i for i, _, _ in expected)

    dead: list[RejectedMessage] = [
        rejected_decoder.decode(value) for _, value in read_topic(worker.kafka_bootstrap, REJECTED.name, 2)
    ]
    assert any(
        d.reason == "invalid_care_plan" and d.topic == CARE_PLANS.name and "someone-else" in d.detail for d in dead
    )


def _wait_for_outcome(worker: Stack, outcome: str, before: dict[str, float]) -> None:
    key = f'{{outcome="{outcome}"}}'
    deadline = time.monotonic() + 30
    while _care_plan_outcomes(worker).get(key, 0) <= before.get(key, 0):
        assert time.monotonic() < deadline, f"no care-plan record {outcome}"
        time.sleep(0.2)


def test_a_care_plan_tombstone_brings_back_the_default_plan(worker: Stack) -> None:
    patient = pid("unplanned")
    default = default_care_plan(patient)
    strict = Limit(rule=Rule.SPO2_LOW, metric="spo2", direction="low", raise_at=94, clear_at=96)
    plan = msgspec.structs.replace(
        default, version=3, limits=tuple(strict if lim.rule is Rule.SPO2_LOW else lim for lim in default.limits)
    )
    before = _care_plan_outcomes(worker)
    asyncio.run(produce(worker.kafka_bootstrap, [(patient, encode_care_plan(plan))], topic=CARE_PLANS.name))
    _wait_for_outcome(worker, "applied", before)
    before = _care_plan_outcomes(worker)
    asyncio.run(produce(worker.kafka_bootstrap, [(patient, None)], topic=CARE_PLANS.name))
    _wait_for_outcome(worker, "removed", before)

    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    records = spo2_records(t0, [93, 93, 93])
    expected = ground_truth(patient, records)  # the default plan: no spo2_low at 93 %
    log = DetectionLog(worker.kafka_bootstrap, {patient})
    send_batches(worker.kafka_bootstrap, [batch(patient, rs, seq=i) for i, rs in enumerate(records)])
    send_batches(worker.kafka_bootstrap, [batch(patient, [Reading("glucose", 45, minutes(t0, 4))], seq=9)])
    got = log.wait_for(lambda rs: "glucose_low_l2" in rules(rs), timeout=30)
    assert sorted(ids([r for r in got if r.rule is not Rule.GLUCOSE_LOW_L2])) == sorted(i for i, _, _ in expected)
    assert "spo2_low" not in rules(got)


def test_timer_reports_a_silent_wearable_and_a_missed_measurement(worker: Stack, db: psycopg.Connection) -> None:
    silent, scheduled = pid("silent"), pid("sched")
    device = f"wear-{uuid.uuid4().hex[:8]}"
    db.execute("INSERT INTO devices (id, device_class) VALUES (%s, 'wearable')", (device,))
    now = datetime.now(UTC).replace(microsecond=0)
    last_seen = now - timedelta(minutes=20)
    # A blood-pressure reading expected at a time of day whose window (+/- 30 min) closed an hour ago.
    due_at = now - timedelta(hours=1, minutes=30)
    due = clock_time(due_at.hour, due_at.minute)
    plan = msgspec.structs.replace(
        default_care_plan(scheduled),
        version=1,
        effective_from=now - timedelta(hours=6),
        measurements=(MeasurementSchedule(metric="bp_systolic", times_of_day=(due,), tolerance_s=1800),),
    )
    before = _care_plan_outcomes(worker)
    asyncio.run(produce(worker.kafka_bootstrap, [(scheduled, encode_care_plan(plan))], topic=CARE_PLANS.name))
    _wait_for_outcome(worker, "applied", before)
    send_batches(
        worker.kafka_bootstrap,
        [
            batch(silent, [Reading("heart_rate", 70, last_seen)], device_id=device, seq=1),
            batch(scheduled, [Reading("heart_rate", 70, now - timedelta(minutes=1))], seq=1),
        ],
    )
    log = DetectionLog(worker.kafka_bootstrap, {silent, scheduled})
    # The timer runs every 30 s (RPM_DETECTION_DUE_INTERVAL_S).
    got = log.wait_for(lambda rs: {"device_silent_warn", "measurement_missed"} <= set(rules(rs)), timeout=75)
    assert {"device_silent_warn", "measurement_missed"} <= set(rules(got)), rules(got)
    warn = next(r for r in got if r.rule is Rule.DEVICE_SILENT_WARN)
    assert warn.patient_id == silent
    assert warn.detection_id == detection_id(
        silent, Rule.DEVICE_SILENT_WARN, DetectionKind.RAISE, f"{iso(last_seen)}|{device}"
    )
    assert warn.detected_at == last_seen + timedelta(minutes=15)
    assert "device_silent_urgent" not in rules(got)
    assert all(r.patient_id == scheduled for r in got if r.rule is Rule.MEASUREMENT_MISSED)
    assert len(ids(got)) == len(set(ids(got)))


# A healthy cohort over a simulated day: what may be raised at all (the false-positive budget).
# Nothing above low severity; NEWS2 low-band (aggregate 1-4: "a registered nurse assesses")
# raises on single SpO2 readings of 95 %, which healthy adults show now and then: at most 8
# raises per patient-day. Everything else (limits, crisis rules, baselines): none.
COHORT, DAY_RECORDS = 20, 288  # one wearable message every 5 min
LOW_BAND_BUDGET_PER_DAY = 8


def test_a_healthy_cohort_stays_within_the_false_positive_budget(worker: Stack) -> None:
    rng = np.random.default_rng(20260105)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    patients = {pid("healthy"): healthy_records(rng, t0, DAY_RECORDS) for _ in range(COHORT)}
    expected = {i for p, records in patients.items() for i, _, _ in ground_truth(p, records)}
    log = DetectionLog(worker.kafka_bootstrap, set(patients))
    send_batches(
        worker.kafka_bootstrap,
        [batch(p, rs, seq=i) for p, records in patients.items() for i, rs in enumerate(records)],
    )
    # Probe after the cohort on each patient's partition: once all probes are out, all is judged.
    send_batches(
        worker.kafka_bootstrap, [batch(p, [Reading("glucose", 45, minutes(t0, 24 * 60))], seq=999) for p in patients]
    )
    got = log.wait_for(lambda rs: rules(rs).count("glucose_low_l2") == COHORT, timeout=90)
    assert rules(got).count("glucose_low_l2") == COHORT
    cohort = [r for r in got if r.rule is not Rule.GLUCOSE_LOW_L2]
    assert {r.detection_id for r in cohort} == expected
    assert len(ids(cohort)) == len(set(ids(cohort)))
    raised = [r for r in cohort if r.kind == "raise"]
    assert {r.rule for r in raised} <= {Rule.NEWS2_LOW}, rules(raised)
    assert all(r.severity.value in ("info", "low") for r in raised)
    assert len(raised) <= LOW_BAND_BUDGET_PER_DAY * COHORT
