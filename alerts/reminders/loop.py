"""The reminder loop: one more supervised task of the alert service (`python -m alerts`).

Each round, with the service's clock:
1. plan: every care plan with schedules, with the patient's preferences, gives the reminders
   due within the horizon (`rules.plan_reminders`); they are stored as 'queued' (a slot's
   rows are stored once: the table's unique key);
2. decide: each queued reminder that is due is locked on its own (`FOR UPDATE SKIP LOCKED`,
   so several processes share the work), looked at against the slot's readings and the
   patient's choices (`rules.decide`), and sent, cancelled, moved or skipped in its own
   transaction; an e-mail is handed to the relay before that transaction commits, and a first
   reminder sent plans its one follow-up (`rules.follow_up_of`);
3. settle: sent reminders whose window closed (plus a grace) get their outcome
   (`reading_after` or `no_reading`).
Whatever one reminder raises is that reminder's failure (logged, the round goes on).
A crash after an e-mail was handed over and before the commit sends it again on the next round
(at least once, like the alert notifications).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec
from prometheus_client import Counter
from psycopg_pool import AsyncConnectionPool

from alerts.notify import channels
from alerts.notify.channels import PermanentError, TemporaryError
from alerts.notify.messages import BadRecipientError, email_address
from alerts.reminders import repository, rules
from alerts.reminders.messages import reminder_email
from alerts.reminders.rules import Decision, Preferences, Reminder
from alerts.reminders.settings import LoopSettings, RemindersSettings
from core.careplan import CarePlan, decode_care_plan
from core.logging import get_logger
from core.retry import DATABASE_DOWN, until_done
from core.supervision import error_detail, failure

log = get_logger("alerts.reminders")

Clock = Callable[[], datetime]
LAST_ERROR_CAP: Final = 500

REMINDERS = Counter(
    "rpm_alerts_reminders",
    "Reminders decided by the reminder loop, by channel and outcome (sent, cancelled_reading_arrived, "
    "skipped_*, deferred, retry) and, once their window closed, reading_after / no_reading",
    ["channel", "outcome"],
)
PLANNED = Counter("rpm_alerts_reminders_planned", "Reminders planned (stored as queued)")


def _key(r: Reminder) -> tuple[str, str, str, str, bool]:
    return (r.patient_id, r.schedule_key, r.slot_key, r.channel, r.follow_up)


def policy_of(settings: RemindersSettings) -> rules.Policy:
    return rules.Policy(
        horizon=timedelta(seconds=settings.reminders_horizon_s),
        daily_at=settings.reminders_daily_at,
        follow_up_gap=timedelta(seconds=settings.reminders_follow_up_gap_s),
        follow_up_margin=timedelta(seconds=settings.reminders_follow_up_margin_s),
    )


@dataclass
class ReminderLoop:
    pool: AsyncConnectionPool[Any]
    settings: LoopSettings
    clock: Clock
    _plans: dict[str, CarePlan | None] = field(default_factory=dict)
    # (patient, schedule, slot, channel, follow-up) of rows known to be stored -> window end
    _stored: dict[tuple[str, str, str, str, bool], datetime] = field(default_factory=dict)

    async def run_once(self) -> None:
        """One round: plan, decide what is due, settle closed windows."""
        self._plans = {}
        await until_done(DATABASE_DOWN)(self._plan)
        await until_done(DATABASE_DOWN)(self._decide_due)
        await until_done(DATABASE_DOWN)(self._settle_closed)

    # --- plan ---------------------------------------------------------------------------------
    async def _plan(self) -> None:
        now = self.clock()
        policy = policy_of(self.settings)
        async with self.pool.connection() as conn, conn.transaction():
            stored = await repository.plans_with_schedules(conn)
            prefs = await repository.preferences(conn, [p for p, _ in stored])
            planned: list[Reminder] = []
            for patient_id, raw in stored:
                plan = self._decode(patient_id, raw)
                if plan is None:
                    continue
                self._plans[patient_id] = plan
                for r in rules.plan_reminders(plan, prefs.get(patient_id, Preferences()), now, policy):
                    if _key(r) not in self._stored:
                        planned.append(r)
            new = await repository.insert_planned(conn, planned)
        # Rows stored (now or by another process before) need no INSERT in later rounds; keys
        # of windows long closed are forgotten.
        self._stored.update((_key(r), r.window_end) for r in planned)
        self._stored = {k: end for k, end in self._stored.items() if end > now - timedelta(days=1)}
        if new:
            PLANNED.inc(new)
            log.info("reminders planned", new=new)

    def _decode(self, patient_id: str, raw: Any) -> CarePlan | None:
        try:
            return decode_care_plan(msgspec.json.encode(raw))
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            log.warning("care plan not readable: no reminders", patient_id=patient_id, error=error_detail(exc))
            return None

    async def _plan_for(self, conn: repository.Conn, patient_id: str) -> CarePlan | None:
        if patient_id not in self._plans:
            raw = await repository.plan_of(conn, patient_id)
            self._plans[patient_id] = None if raw is None else self._decode(patient_id, raw)
        return self._plans[patient_id]

    # --- decide ---------------------------------------------------------------------------------
    async def _decide_due(self) -> None:
        """Every reminder that is due, a batch at a time (many slots share a time of day)."""
        batch = self.settings.reminders_batch
        seen: set[int] = set()
        while True:
            async with self.pool.connection() as conn:
                ids = [i for i in await repository.due_ids(conn, self.clock(), batch) if i not in seen]
            for reminder_id in ids:
                seen.add(reminder_id)
                try:
                    await until_done(DATABASE_DOWN)(self._decide_one, reminder_id)
                except Exception as exc:
                    log.error("reminder round failed for one reminder", reminder_id=reminder_id, **failure(exc))
                    detail = f"internal error: {error_detail(exc)}"
                    await until_done(DATABASE_DOWN)(self._give_up, reminder_id, detail)
            if len(ids) < batch:
                return

    async def _give_up(self, reminder_id: int, error: str) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await repository.settle(
                conn, reminder_id, "skipped", rules.SKIPPED_SEND_FAILED, self.clock(), error[:LAST_ERROR_CAP]
            )

    async def _decide_one(self, reminder_id: int) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            now = self.clock()
            r = await repository.lock_due(conn, reminder_id, now)
            if r is None:
                return
            plan = await self._plan_for(conn, r.patient_id)
            prefs = (await repository.preferences(conn, [r.patient_id])).get(r.patient_id, Preferences())
            if plan is None:
                decision = Decision("skip", rules.SKIPPED_PLAN_CHANGED)
                zone = None
            else:
                times = await repository.reading_times(conn, r, r.window_start, r.window_end)
                received, scheduled = rules.received_for(plan, r, times)
                zone = rules.zone_or(prefs.time_zone, plan.zone)
                decision = rules.decide(r, received=received, scheduled=scheduled, prefs=prefs, zone=zone, now=now)
            if decision.action == "defer":
                assert decision.until is not None
                await repository.defer(conn, r.id or 0, decision.until)
                self._count(r, "deferred")
                return
            if decision.action in ("cancel", "skip"):
                state = "cancelled" if decision.action == "cancel" else "skipped"
                await repository.settle(conn, r.id or 0, state, decision.outcome or state, now)
                self._count(r, decision.outcome or state)
                log.info("reminder not sent", reminder_id=r.id, channel=r.channel, outcome=decision.outcome)
                return
            assert zone is not None
            if r.channel == "email" and not await self._email(conn, r, prefs, zone, now):
                return
            await repository.settle(conn, r.id or 0, "sent", rules.SENT, now)
            follow = rules.follow_up_of(r, now, policy_of(self.settings))
            if follow is not None:
                await repository.insert_planned(conn, [follow])
            self._count(r, rules.SENT)
            log.info("reminder sent", reminder_id=r.id, channel=r.channel, follow_up=r.follow_up)

    async def _email(self, conn: repository.Conn, r: Reminder, prefs: Preferences, zone: Any, now: datetime) -> bool:
        """Hand the e-mail to the relay; False when it was not (the row is moved or skipped)."""
        s = self.settings
        try:
            to = email_address(prefs.email or "")
            message = reminder_email(
                r, to=to, sender=s.reminders_from, link_base=s.notify_link_base, zone=zone, now=now
            )
            await channels.send_email(s, message, to.addr_spec)
        except (BadRecipientError, PermanentError) as exc:
            await repository.settle(
                conn, r.id or 0, "skipped", rules.SKIPPED_SEND_FAILED, now, str(exc)[:LAST_ERROR_CAP]
            )
            self._count(r, rules.SKIPPED_SEND_FAILED)
            log.warning("reminder e-mail refused", reminder_id=r.id, error=str(exc))
            return False
        except TemporaryError as exc:
            attempts = r.attempts + 1
            retry_at = now + timedelta(
                seconds=min(s.notify_retry_max_s, s.notify_retry_initial_s * 2 ** (attempts - 1))
            )
            if attempts >= s.reminders_max_attempts or retry_at >= r.window_end:
                await repository.settle(
                    conn, r.id or 0, "skipped", rules.SKIPPED_SEND_FAILED, now, str(exc)[:LAST_ERROR_CAP]
                )
                self._count(r, rules.SKIPPED_SEND_FAILED)
            else:
                await repository.retry(conn, r.id or 0, retry_at, attempts, str(exc)[:LAST_ERROR_CAP])
                self._count(r, "retry")
            log.warning("reminder e-mail not handed over", reminder_id=r.id, attempt=attempts, error=str(exc))
            return False
        return True

    # --- settle ---------------------------------------------------------------------------------
    async def _settle_closed(self) -> None:
        before = self.clock() - timedelta(seconds=self.settings.reminders_close_grace_s)
        async with self.pool.connection() as conn, conn.transaction():
            for r in await repository.open_sent(conn, before, self.settings.reminders_batch):
                plan = await self._plan_for(conn, r.patient_id)
                received = False
                if plan is not None:
                    times = await repository.reading_times(conn, r, r.window_start, r.window_end)
                    received, _ = rules.received_for(plan, r, times)
                outcome = rules.window_outcome(received)
                await repository.set_outcome(conn, r.id or 0, outcome)
                self._count(r, outcome)

    def _count(self, r: Reminder, outcome: str) -> None:
        REMINDERS.labels(r.channel, outcome).inc()


async def run_reminders(pool: AsyncConnectionPool[Any], settings: LoopSettings, *, clock: Clock) -> None:
    """Run rounds `reminders_interval_s` apart until cancelled (a supervised service task)."""
    loop = ReminderLoop(pool, settings, clock)
    while True:
        try:
            await loop.run_once()
        except Exception as exc:
            # One round's failure (a bug, a row the rules refuse) must not stop the next.
            log.error("reminder round failed", **failure(exc))
        await asyncio.sleep(settings.reminders_interval_s)
