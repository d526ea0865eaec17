"""Supervision and readiness of the real worker process (slow: each test starts its own):
- a fault injected into a lane, an agent or a timer ends the process with exit code 70 and
  a critical log line naming it, and the reading sent meanwhile is stored by the next worker
  (a lane or the readings agent dies on it before storing it: nothing was acknowledged);
- a worker whose storage cannot progress (database stopped) with readings waiting reports
  not ready within RPM_STREAMS_STALL_AFTER_S, and ready again once it caught up;
- an orderly stop (SIGTERM) is not taken for a death: exit code 0, no critical line.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from core.careplan import default_care_plan, encode_care_plan
from core.supervision import EXIT_TASK_DIED
from core.wire import CARE_PLANS
from infra.stack import Stack
from tests.helpers import wait_for
from tests.streams.support import WorkerProcess, batch, own_worker, owned_partitions, produce, send_batches, vitals

pytestmark = pytest.mark.slow


def stored(stack: Stack, patient_id: str) -> int:
    with psycopg.connect(stack.admin_db_url, connect_timeout=3) as conn:
        row = conn.execute("SELECT count(*) FROM observations WHERE patient_id = %s", (patient_id,)).fetchone()
    return int(row[0]) if row else 0


def _exit_code(worker: WorkerProcess, timeout: float) -> int | None:
    return wait_for(lambda: worker.proc.poll(), timeout=timeout, interval=0.2)


@pytest.mark.timeout(420)
# One of each kind of supervised task: a lane (lane-detect runs through the same wrapper,
# streams/app.py `_faulty`), an agent (the readings agent runs through the same
# supervision.agent), and a timer. Each case restarts a worker twice (about 110 s); the
# other points stay injectable with RPM_STREAMS_FAULT_INJECT.
@pytest.mark.parametrize("point", ["lane-store", "agent-care-plans", "timer-detect-due"])
def test_an_injected_fault_ends_the_worker_naming_the_task_and_loses_no_reading(worker: Stack, point: str) -> None:
    patient = f"fault-{uuid.uuid4().hex[:8]}"
    reading = batch(patient, vitals(datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)))
    env = {"RPM_STREAMS_FAULT_INJECT": point, "RPM_DETECTION_DUE_INTERVAL_S": "1"}
    with own_worker(worker, env, replace_main=True) as faulty:
        send_batches(worker.kafka_bootstrap, [reading])
        plan = encode_care_plan(default_care_plan(patient))
        asyncio.run(produce(worker.kafka_bootstrap, [(patient, plan)], topic=CARE_PLANS.name))
        code = _exit_code(faulty, timeout=180)
        log = faulty.log()
        assert code == EXIT_TASK_DIED, f"exit code {code}; log:\n{log[-3000:]}"
        assert "supervised task ended unexpectedly" in log
        assert f"task {point!r} raised InjectedFaultError" in log
        lost_before_restart = stored(worker, patient)
    # own_worker started the stack's worker again, without the fault. The dead worker may still
    # hold partitions in the group until its session times out: wait for all of them.
    owns_all = wait_for(lambda: owned_partitions(worker.ports.streams_metrics) == set(range(8)), timeout=180)
    if not owns_all or not wait_for(lambda: stored(worker, patient) == 4, timeout=180):
        restarted = (worker.logs / "streams.log").read_text(errors="replace")
        pytest.fail(
            f"the reading was not stored after the restart ({stored(worker, patient)} of 4, "
            f"{lost_before_restart} before it; partitions owned: "
            f"{sorted(owned_partitions(worker.ports.streams_metrics))}); worker log:\n{restarted[-6000:]}"
        )
    if point == "lane-store":  # others may die before or after storage
        assert lost_before_restart == 0, "the faulty worker stored the reading it should have died on"


@pytest.mark.timeout(400)
def test_a_worker_that_cannot_store_with_readings_waiting_reports_not_ready_then_recovers(worker: Stack) -> None:
    patient = f"stall-{uuid.uuid4().hex[:8]}"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    stall_after = 5
    with own_worker(worker, {"RPM_STREAMS_STALL_AFTER_S": str(stall_after)}, replace_main=True) as w:
        assert wait_for(lambda: w.metric("rpm_streams_up") == 1.0, timeout=120), w.log()[-3000:]
        assert wait_for(lambda: w.metric("rpm_streams_ready") == 1.0, timeout=60)
        # the backlog earlier tests left on the topics drains first (slow on a loaded machine)
        assert wait_for(lambda: w.metric("rpm_streams_input_waiting") == 0.0, timeout=180)
        worker.stop(["postgres"])
        try:
            send_batches(worker.kafka_bootstrap, [batch(patient, vitals(t0 + timedelta(minutes=i))) for i in range(20)])
            assert wait_for(lambda: (w.metric("rpm_streams_input_waiting") or 0) >= 20, timeout=60)
            # Detection goes on; storage waits for the database, so nothing is finished.
            assert wait_for(lambda: w.metric("rpm_streams_ready") == 0.0, timeout=stall_after + 60), (
                "a worker with input waiting and no progress still reports ready"
            )
            assert w.proc.poll() is None
        finally:
            worker.start(["postgres"])
        assert wait_for(lambda: stored(worker, patient) == 80, timeout=120), stored(worker, patient)
        assert wait_for(lambda: w.metric("rpm_streams_ready") == 1.0, timeout=60)
        # the backlog earlier tests left on the topics drains first (slow on a loaded machine)
        assert wait_for(lambda: w.metric("rpm_streams_input_waiting") == 0.0, timeout=180)
        # An orderly stop is not a death.
        code = w.terminate()
        assert code == 0, f"exit code {code} on SIGTERM; log:\n{w.log()[-3000:]}"
        assert "ended unexpectedly" not in w.log()
