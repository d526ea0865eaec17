"""The alert service process: detections from Kafka become alerts; timers escalate and end
snoozes; the notification sender (alerts/notify) runs beside them.

Consumer: `rpm.detections.v1` in a consumer group, offsets committed by hand only after the
database transactions of every detection fetched have committed. Each detection is its own
transaction (alerts/service.py); one patient's are applied in order, different patients' side
by side (`alerts_parallel` at once). Each is behind a barrier: a record that cannot be decoded is
dead-lettered `undecodable_record`; one whose patient is unknown `unknown_patient`; one that
keeps failing for a reason of its own (after `alerts_attempts` tries) `internal_error`; the
stream goes on. A database or Kafka outage is waited out (core/retry.py), never dead-lettered.
A crash before the commit makes Kafka deliver the detections again; their ids are in
`alert_detections`, so they create nothing twice.

Supervised tasks (core/supervision.py): the consumer, the timer (escalations due, snoozes
ended), the figures (precision per rule, alerts per patient-day) and the notification sender
(`alerts.notify.run_outbox` with its `NotifySettings`, ADR 0019), which drains the outbox this
service fills; it is found at start-up, so this module does not import it. The reminder loop
(`alerts.reminders.run_reminders`, ADR 0026) plans, sends and cancels the patients' reminders
on the same pool and clock, unless `reminders_enabled` is off; so does the retention task
(`alerts.retention.run_retention`, ADR 0028), which drops raw observations older than
`retention_days`, unless `retention_enabled` is off.
Readiness (`rpm_alerts_ready`, core/progress.py): up, and either no detection waiting on
Kafka or some committed within `alerts_stall_after_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool

from alerts import metrics, repository, service
from alerts.reminders import run_reminders
from alerts.retention import run_retention
from alerts.settings import AlertsSettings
from core.alert_lifecycle import PERSON_DISPOSITIONS, alerts_per_patient_day, precision
from core.clients.db import create_pool
from core.dead_letters import INTERNAL_ERROR, dead_letter
from core.logging import get_logger
from core.progress import Progress
from core.retry import DATABASE_DOWN, KAFKA_DOWN, bounded, until_done
from core.supervision import Supervisor, error_detail, failure
from core.wire import DETECTIONS, REJECTED, DetectionRecord, detection_decoder

log = get_logger("alerts.app")

UNDECODABLE: Final = "undecodable_record"
UNKNOWN_PATIENT: Final = "unknown_patient"
# Every reason the service writes (docs/operations.md, "Alert service").
REASONS: Final = frozenset({UNDECODABLE, UNKNOWN_PATIENT, INTERNAL_ERROR})
STOP_GRACE_S: Final = 5.0

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AlertService:
    def __init__(self, settings: AlertsSettings, clock: Clock = _utcnow) -> None:
        self.settings = settings
        self.clock = clock
        self.progress = Progress("alerts", settings.alerts_stall_after_s)
        self._supervisor = Supervisor("alerts")
        self._pool: AsyncConnectionPool | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    # --- lifecycle ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        self._pool = create_pool(s.database_url.get_secret_value(), s.db_pool_min, s.db_pool_max, name="alerts")
        await self._pool.open(wait=False)
        await until_done(DATABASE_DOWN)(self._pool.wait, 10.0)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap, acks="all", enable_idempotence=s.kafka_idempotent_producer
        )
        await until_done(KAFKA_DOWN)(self._producer.start)
        self._consumer = AIOKafkaConsumer(
            DETECTIONS.name,
            bootstrap_servers=s.kafka_bootstrap,
            group_id=s.alerts_group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=s.alerts_fetch_max_wait_ms,
            max_poll_records=s.alerts_batch_max,
        )
        await until_done(KAFKA_DOWN)(self._consumer.start)
        self._supervisor.spawn(self._consume(), name="consume")
        self._supervisor.spawn(self._timer(), name="timer")
        self._supervisor.spawn(self._figures(), name="figures")
        sender = self._notify_sender()
        if sender is not None:
            self._supervisor.spawn(sender, name="notify-outbox")
        if s.reminders_enabled:
            self._supervisor.spawn(run_reminders(self._pool, s, clock=self.clock), name="reminders")
        if s.retention_enabled:
            self._supervisor.spawn(run_retention(self._pool, s, clock=self.clock), name="retention")
        self.progress.up = True
        metrics.UP.set(1)
        log.info("alert service up", kafka=s.kafka_bootstrap, group=s.alerts_group_id, notify=sender is not None)
        try:
            await stop.wait()
        finally:
            self.progress.up = False
            metrics.UP.set(0)
            await self._supervisor.stop(STOP_GRACE_S)
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            with contextlib.suppress(Exception):
                await self._producer.stop()
            await self._pool.close()
            log.info("alert service stopped")

    def _notify_sender(self) -> Coroutine[Any, Any, Any] | None:
        """The outbox sender of `alerts.notify` (`run_outbox(pool, NotifySettings(), clock=)`,
        a service that never returns), or None where that package is not installed."""
        try:
            notify = importlib.import_module("alerts.notify")
        except ModuleNotFoundError as exc:
            if exc.name != "alerts.notify":
                raise
            log.warning("alerts.notify not found: notifications stay queued in the outbox")
            return None
        assert self._pool is not None
        sender: Coroutine[Any, Any, Any] = notify.run_outbox(self._pool, notify.NotifySettings(), clock=self.clock)
        return sender

    # --- detections -------------------------------------------------------------------------
    async def _consume(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            fetched = await consumer.getmany(timeout_ms=500, max_records=self.settings.alerts_batch_max)
            offsets: dict[TopicPartition, int] = {}
            held = sum(len(m) for m in fetched.values())
            await self._report_lag(held)
            for tp, messages in fetched.items():
                await self._each_patient(messages)
                offsets[tp] = messages[-1].offset + 1
            if offsets:
                await self._commit(offsets)
                self.progress.advanced()
                await self._report_lag(0)

    async def _each_patient(self, messages: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Apply the detections of one partition: each patient's in order (they are keyed by
        patient), different patients' side by side, up to `alerts_parallel` transactions at
        once, so an alert storm waits on round trips and commits in parallel, not one by one."""
        by_patient: dict[bytes | None, list[ConsumerRecord[bytes, bytes]]] = {}
        for message in messages:
            by_patient.setdefault(message.key, []).append(message)
        slots = asyncio.Semaphore(self.settings.alerts_parallel)

        async def in_order(mine: list[ConsumerRecord[bytes, bytes]]) -> None:
            async with slots:
                for message in mine:
                    await self._one(message)

        await asyncio.gather(*(in_order(mine) for mine in by_patient.values()))

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        try:
            await until_done((asyncio.TimeoutError, OSError))(self._consumer.commit, offsets)
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partitions away: their new owner gets these detections
            # again and finds their ids in alert_detections.
            log.warning("offsets not committed; the detections come again and are dropped as seen", error=str(exc))

    async def _report_lag(self, held: int) -> None:
        assert self._consumer is not None
        lag = 0
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is None:
                continue
            with contextlib.suppress(KafkaError, AssertionError):
                lag += max(0, high - await self._consumer.position(tp))
        metrics.LAG.set(lag)
        self.progress.waiting(lag + held)

    async def _one(self, message: ConsumerRecord[bytes, bytes]) -> None:
        """The barrier: whatever this detection raises becomes one dead letter."""
        value = message.value
        try:
            record = detection_decoder.decode(value or b"")
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await self._dead_letter(UNDECODABLE, error_detail(exc), message)
            return
        try:
            await bounded((Exception,), self.settings.alerts_attempts)(self._apply, record)
        except pg_errors.ForeignKeyViolation as exc:
            await self._dead_letter(UNKNOWN_PATIENT, f"no patient {record.patient_id!r}: {error_detail(exc)}", message)
        except Exception as exc:
            log.error("detection dead-lettered", detection_id=record.detection_id, **failure(exc))
            await self._dead_letter(INTERNAL_ERROR, error_detail(exc), message)

    async def _apply(self, record: DetectionRecord) -> None:
        await until_done(DATABASE_DOWN)(self._transaction, record)

    async def _transaction(self, record: DetectionRecord) -> None:
        assert self._pool is not None
        detection = service.detection_of(record)
        async with self._pool.connection() as conn, conn.transaction():
            applied = await service.apply_detection(conn, detection, self.clock())
        metrics.DETECTIONS.labels(outcome=applied.outcome).inc()
        if record.produced_at is not None and applied.outcome != "duplicate":
            metrics.LATENCY.observe(max(0.0, (datetime.now(UTC) - record.produced_at).total_seconds()))
        for channel in applied.queued:
            metrics.QUEUED.labels(channel=channel).inc()
        if applied.alert is None:
            return
        if applied.outcome == "opened":
            metrics.OPENED.labels(rule=applied.alert.rule, severity=str(applied.alert.severity)).inc()
        elif applied.outcome == "cleared":
            metrics.RESOLVED.labels(rule=applied.alert.rule, disposition=str(applied.alert.disposition)).inc()

    async def _dead_letter(self, reason: str, detail: str, message: ConsumerRecord[bytes, bytes]) -> None:
        assert self._producer is not None
        value = dead_letter(reason, detail, message.value, topic=DETECTIONS.name)
        await until_done(KAFKA_DOWN)(self._producer.send_and_wait, REJECTED.name, value, message.key)
        metrics.DEAD_LETTERS.labels(reason=reason).inc()
        log.warning("dead letter", reason=reason, detail=detail, partition=message.partition, offset=message.offset)

    # --- timers -------------------------------------------------------------------------------
    async def _timer(self) -> None:
        while True:
            await asyncio.sleep(self.settings.alerts_timer_s)
            try:
                await until_done(DATABASE_DOWN)(self._timer_round)
            except Exception as exc:
                # One round's failure (a bug, a row the rules refuse) must not stop the next.
                log.error("timer round failed", **failure(exc))

    async def _timer_round(self) -> None:
        assert self._pool is not None
        now = self.clock()
        limit = self.settings.alerts_timer_batch
        async with self._pool.connection() as conn, conn.transaction():
            escalated = await service.escalate_due(conn, now, limit)
        for t in escalated:
            if t.notify_tier is not None:
                metrics.ESCALATED.labels(tier=str(t.notify_tier)).inc()
        async with self._pool.connection() as conn, conn.transaction():
            unsnoozed = await service.expire_snoozes(conn, now, limit)
        metrics.UNSNOOZED.inc(len(unsnoozed))

    async def _figures(self) -> None:
        while True:
            try:
                await until_done(DATABASE_DOWN)(self._figures_round)
            except Exception as exc:
                log.error("figures round failed", **failure(exc))
            await asyncio.sleep(self.settings.alerts_figures_s)

    async def _figures_round(self) -> None:
        assert self._pool is not None
        days = self.settings.alerts_figures_days
        since = self.clock() - timedelta(days=days)
        async with self._pool.connection() as conn:
            resolved = await repository.resolved_by_rule(conn, since)
            opened, patients = await repository.opened_and_patients(conn, since)
        by_rule: dict[str, list[str]] = {}
        for rule, disposition, count in resolved:
            by_rule.setdefault(rule, []).extend([disposition] * count)
            metrics.RESOLVED_WINDOW.labels(rule=rule, disposition=disposition).set(count)
        for rule, dispositions in by_rule.items():
            value = precision(dispositions)
            if value is not None:
                metrics.PRECISION.labels(rule=rule).set(value)
            elif not any(d in PERSON_DISPOSITIONS for d in dispositions):
                with contextlib.suppress(KeyError):
                    metrics.PRECISION.remove(rule)
        per_day = alerts_per_patient_day(opened, patients, float(days))
        metrics.PER_PATIENT_DAY.set(per_day if per_day is not None else 0.0)


__all__ = ["REASONS", "AlertService"]
