"""The retention task: a round every `retention_interval_s`, run by the alert service under its
supervisor (its end ends the process; a failed round is logged and counted, and the next one
tries again).

On the Apache edition a round drops the chunks of `observations` that end before
now minus `retention_days` and logs each (name, time range, estimated rows); where the edition has
policy jobs it keeps TimescaleDB's retention policy at that period instead. Several alert
service processes may run it: the database lets one drop at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter, Gauge
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from alerts.retention import repository
from alerts.retention.repository import DroppedChunk
from alerts.retention.settings import RetentionSettings
from core.logging import get_logger
from core.retry import DATABASE_DOWN, until_done
from core.supervision import failure

log = get_logger("alerts.retention")

Clock = Callable[[], datetime]

CHUNKS_DROPPED = Counter(
    "rpm_retention_chunks_dropped", "Chunks of raw observations dropped by the retention task (Apache edition)"
)
ROWS_DROPPED = Counter(
    "rpm_retention_rows_dropped_estimated",
    "Raw observations dropped by the retention task, as the planner's estimate of each chunk's rows",
)
CUTOFF = Gauge(
    "rpm_retention_cutoff_timestamp_seconds",
    "Raw observations before this time are dropped (Unix time of the last round's cutoff)",
)
LAST_ROUND = Gauge(
    "rpm_retention_last_round_timestamp_seconds", "When the retention task last finished a round (Unix time)"
)
ROUNDS_FAILED = Counter("rpm_retention_rounds_failed", "Retention rounds that failed (the next round tries again)")


@dataclass(frozen=True)
class RetentionRound:
    edition: str
    cutoff: datetime
    dropped: list[DroppedChunk]
    policy_job: int | None


async def retention_round(conn: AsyncConnection[Any], settings: RetentionSettings, now: datetime) -> RetentionRound:
    """One round in its own transaction: drop what is older than the period, or keep the policy."""
    keep = timedelta(days=settings.retention_days)
    cutoff = now - keep
    dropped: list[DroppedChunk] = []
    job: int | None = None
    async with conn.transaction():
        edition = await repository.edition(conn)
        if edition == "apache":
            dropped = await repository.drop_chunks_before(conn, cutoff)
        else:
            job = await repository.set_policy(conn, keep)
    for chunk in dropped:
        log.info(
            "observations chunk dropped",
            chunk=chunk.dropped_chunk,
            start=chunk.dropped_from.isoformat(),
            end=chunk.dropped_to.isoformat(),
            approximate_rows=chunk.approximate_rows,
            retention_days=settings.retention_days,
        )
        CHUNKS_DROPPED.inc()
        ROWS_DROPPED.inc(max(0, chunk.approximate_rows or 0))
    CUTOFF.set(cutoff.timestamp())
    LAST_ROUND.set(now.timestamp())
    if job is not None:
        log.debug("retention policy in place", job=job, retention_days=settings.retention_days, edition=edition)
    return RetentionRound(edition, cutoff, dropped, job)


async def _round(pool: AsyncConnectionPool[Any], settings: RetentionSettings, now: datetime) -> None:
    async with pool.connection() as conn:
        await retention_round(conn, settings, now)


async def run_retention(pool: AsyncConnectionPool[Any], settings: RetentionSettings, *, clock: Clock) -> None:
    """Run rounds `retention_interval_s` apart until cancelled (a supervised service task)."""
    while True:
        try:
            await until_done(DATABASE_DOWN)(_round, pool, settings, clock())
        except Exception as exc:
            # One round's failure (a lock not granted in time, a refused period) must not stop
            # the next; the counter lets operations alert on it.
            ROUNDS_FAILED.inc()
            log.error("retention round failed", **failure(exc))
        await asyncio.sleep(settings.retention_interval_s)
