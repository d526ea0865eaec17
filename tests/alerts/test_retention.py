"""Retention of raw observations and the hourly/daily rollups (ADR 0028), on the real
TimescaleDB of the test stack (Apache edition: our own drop_chunks task, plain views)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import psycopg
import pytest
from prometheus_client import REGISTRY
from psycopg import errors
from pydantic import ValidationError

from alerts.retention import RetentionRound, RetentionSettings, retention_round, run_retention
from api.careplans.schemas import MAX_WHAT_IF_DAYS
from api.patients.schemas import ADHERENCE_DAYS
from api.portal.service import WEEKS
from core.clients.db import MIGRATIONS_DIR, create_pool
from core.retention import MIN_RETENTION_DAYS, READER_WINDOWS
from core.wire import MAX_READING_AGE
from infra.stack import Stack
from tests.helpers import create_patient

DAY = timedelta(days=1)

# The stack's alert service runs a retention round when it starts (a module before this one may
# just have restarted it): on these tests' old chunks, it would race their own rounds.
pytestmark = pytest.mark.usefixtures("without_alert_service")


def _insert(db: psycopg.Connection, patient: str, metric: str, rows: list[tuple[datetime, float]]) -> None:
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO observations (patient_id, device_id, metric, ts, value, received_at, seq) "
            "VALUES (%s, 'dev-retention', %s, %s, %s, %s, %s)",
            [(patient, metric, ts, value, ts, seq) for seq, (ts, value) in enumerate(rows)],
        )


def _chunk_of(db: psycopg.Connection, patient: str, ts: datetime) -> str:
    row = db.execute(
        "SELECT tableoid::regclass::text FROM observations WHERE patient_id = %s AND ts = %s", (patient, ts)
    ).fetchone()
    assert row is not None
    return str(row[0])


def _chunks(db: psycopg.Connection) -> set[str]:
    return {str(r[0]) for r in db.execute("SELECT c::text FROM show_chunks('observations') AS c").fetchall()}


def _round(stack: Stack, settings: RetentionSettings, now: datetime) -> RetentionRound:
    async def go() -> RetentionRound:
        # As the alert service's own login: what the process may do is what is tested.
        async with await psycopg.AsyncConnection.connect(stack.db_url("alerts")) as conn:
            return await retention_round(conn, settings, now)

    return asyncio.run(go())


def _dropped_total() -> float:
    return REGISTRY.get_sample_value("rpm_retention_chunks_dropped_total") or 0.0


def test_chunks_older_than_the_period_are_dropped_newer_kept(stack: Stack, db: psycopg.Connection) -> None:
    patient = create_patient(db)
    # Noon today as the task's clock: the cutoff falls at noon 400 days ago, inside a chunk
    # (chunks are one day long, from midnight UTC).
    now = datetime.combine(datetime.now(UTC).date(), time(12), tzinfo=UTC)
    settings = RetentionSettings(retention_days=400)
    cutoff = now - 400 * DAY
    cutoff_day = datetime.combine(cutoff.date(), time(), tzinfo=UTC)
    old = [cutoff_day - 100 * DAY + timedelta(hours=3), cutoff_day - timedelta(hours=1)]
    # The chunk holding the cutoff ends after it: kept whole, its older rows too.
    straddling = [cutoff - timedelta(hours=1), cutoff + timedelta(hours=1)]
    new = [now - 30 * DAY, now - timedelta(hours=2)]
    _insert(db, patient, "heart_rate", [(ts, 70.0 + i) for i, ts in enumerate(old + straddling + new)])
    old_chunks = {_chunk_of(db, patient, ts) for ts in old}
    kept_chunks = {_chunk_of(db, patient, ts) for ts in straddling + new}
    assert len(old_chunks) == 2
    assert old_chunks <= _chunks(db)
    before = _dropped_total()

    result = _round(stack, settings, now)

    assert result.edition == "apache"
    assert result.cutoff == cutoff
    dropped = {c.dropped_chunk for c in result.dropped}
    assert old_chunks <= dropped
    assert all(c.dropped_to <= cutoff for c in result.dropped)
    remaining = _chunks(db)
    assert not old_chunks & remaining
    assert kept_chunks <= remaining
    assert (
        db.execute("SELECT c::text FROM show_chunks('observations', older_than => %s) AS c", (cutoff,)).fetchall() == []
    )
    kept = [
        r[0] for r in db.execute("SELECT ts FROM observations WHERE patient_id = %s ORDER BY ts", (patient,)).fetchall()
    ]
    assert kept == straddling + new
    assert _dropped_total() - before == len(result.dropped)
    assert REGISTRY.get_sample_value("rpm_retention_cutoff_timestamp_seconds") == cutoff.timestamp()

    # A second round finds nothing more to drop.
    assert _round(stack, settings, now).dropped == []


def test_the_database_refuses_a_period_below_the_floor_whoever_asks(stack: Stack, db: psycopg.Connection) -> None:
    with psycopg.connect(stack.db_url("alerts"), autocommit=True) as alerts:
        with pytest.raises(errors.InvalidParameterValue, match="kept at least"):
            alerts.execute("SELECT * FROM drop_observation_chunks(now() - interval '30 days')")
        with pytest.raises(errors.InvalidParameterValue, match="kept at least"):
            alerts.execute("SELECT set_observation_retention_policy(interval '30 days')")
        # Not the hypertable's owner: drop_chunks itself is refused.
        with pytest.raises(errors.InsufficientPrivilege):
            alerts.execute("SELECT drop_chunks('observations', older_than => now() - interval '400 days')")
    for process in ("api", "reporting", "streams", "ingest"):
        with (
            psycopg.connect(stack.db_url(process), autocommit=True) as conn,
            pytest.raises(errors.InsufficientPrivilege),
        ):
            conn.execute("SELECT * FROM drop_observation_chunks(now() - interval '400 days')")


def test_settings_refuse_a_period_below_the_longest_reader() -> None:
    with pytest.raises(ValidationError, match=f"at least {MIN_RETENTION_DAYS}"):
        RetentionSettings(retention_days=MIN_RETENTION_DAYS - 1)
    assert RetentionSettings(retention_days=MIN_RETENTION_DAYS).retention_days == MIN_RETENTION_DAYS
    assert RetentionSettings().retention_days == 400


def test_the_floor_covers_every_reader_and_matches_the_database() -> None:
    windows = sorted(READER_WINDOWS.values())
    assert windows[-1] == MAX_READING_AGE
    assert timedelta(days=MAX_WHAT_IF_DAYS) <= READER_WINDOWS[next(k for k in READER_WINDOWS if "what-if" in k)]
    assert timedelta(days=WEEKS * 7 + 1) <= READER_WINDOWS[next(k for k in READER_WINDOWS if "portal" in k)]
    assert timedelta(days=ADHERENCE_DAYS) <= READER_WINDOWS[next(k for k in READER_WINDOWS if "summary" in k)]
    sql = (Path(MIGRATIONS_DIR) / "0016_retention_rollups.sql").read_text()
    floors = re.findall(r"keep_at_least constant interval := interval '(\d+) days'", sql)
    assert floors == [str(MIN_RETENTION_DAYS)] * 2


def test_rollups_count_mean_min_max_per_hour_and_day(stack: Stack, db: psycopg.Connection) -> None:
    patient = create_patient(db)
    day = datetime.combine(datetime.now(UTC).date() - 3 * DAY, time(), tzinfo=UTC)
    _insert(
        db,
        patient,
        "heart_rate",
        [
            (day + timedelta(hours=8, minutes=5), 60.0),
            (day + timedelta(hours=8, minutes=30), 70.0),
            (day + timedelta(hours=8, minutes=59), 95.0),
            (day + timedelta(hours=9), 80.0),
            (day + DAY + timedelta(hours=1), 50.0),
        ],
    )
    _insert(db, patient, "spo2", [(day + timedelta(hours=8, minutes=10), 97.0)])
    query = "SELECT metric, bucket, n, mean, min, max FROM {} WHERE patient_id = %s ORDER BY metric, bucket"
    for process in ("reporting", "api"):
        with psycopg.connect(stack.db_url(process), autocommit=True) as conn:
            hourly = conn.execute(query.format("observations_hourly"), (patient,)).fetchall()
            daily = conn.execute(query.format("observations_daily"), (patient,)).fetchall()
        assert hourly == [
            ("heart_rate", day + timedelta(hours=8), 3, 75.0, 60.0, 95.0),
            ("heart_rate", day + timedelta(hours=9), 1, 80.0, 80.0, 80.0),
            ("heart_rate", day + DAY + timedelta(hours=1), 1, 50.0, 50.0, 50.0),
            ("spo2", day + timedelta(hours=8), 1, 97.0, 97.0, 97.0),
        ], process
        assert daily == [
            ("heart_rate", day, 4, 76.25, 60.0, 95.0),
            ("heart_rate", day + DAY, 1, 50.0, 50.0, 50.0),
            ("spo2", day, 1, 97.0, 97.0, 97.0),
        ], process


def test_a_refused_round_is_counted_and_the_task_goes_on(stack: Stack) -> None:
    """The supervised task survives a failed round (here: a clock two years ahead asks for a
    cutoff the database refuses) and the next round runs."""
    real_now = datetime.now(UTC)
    times = [real_now + 730 * DAY, real_now]
    failed = "rpm_retention_rounds_failed_total"

    async def go() -> tuple[float, float, bool]:
        failed_before = REGISTRY.get_sample_value(failed) or 0.0
        settings = RetentionSettings(retention_interval_s=0.05)
        pool = create_pool(stack.db_url("alerts"), 1, 2, name="retention-test")
        await pool.open(wait=True)
        clock = iter(times)
        task = asyncio.create_task(run_retention(pool, settings, clock=lambda: next(clock, real_now)))
        try:
            for _ in range(200):
                await asyncio.sleep(0.05)
                if REGISTRY.get_sample_value("rpm_retention_last_round_timestamp_seconds") == real_now.timestamp():
                    break
            alive = not task.done()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await pool.close()
        last = REGISTRY.get_sample_value("rpm_retention_last_round_timestamp_seconds") or 0.0
        return (REGISTRY.get_sample_value(failed) or 0.0) - failed_before, last, alive

    failed_rounds, last_round, alive = asyncio.run(go())
    assert failed_rounds == 1
    assert last_round == real_now.timestamp()
    assert alive
