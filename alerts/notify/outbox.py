"""The notification sender: drains the outbox (`notifications`) that the alert lifecycle
fills, one round at a time.

A round claims the rows that are due (`FOR UPDATE SKIP LOCKED`, so any number of senders
share the work and each row goes to one of them) and looks at each row's alert again: an
alert acknowledged or resolved since the row was queued cancels it, a snoozed one moves it
to the snooze's end. The others become 'sending' with a lease and the claim commits. Each is
then delivered in a transaction of its own that locks the row and its alert (FOR SHARE),
looks at the alert once more (an acknowledgement after the claim cancels it), delivers, and
settles it before the locks go: 'sent' (and a 'notified' row in the alert's history),
'queued' again after a backoff on a temporary error, or 'failed' with the reason. An
acknowledgement during a delivery waits for it; a message handed over is never unsent. A
sender that dies mid-delivery leaves its rows 'sending': when the lease ends another sender
takes them up (an e-mail may then go out twice; nothing is lost).

Whatever one notification raises is that notification's failure (the per-message barrier):
the round goes on with the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import httpx
from prometheus_client import Counter
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from alerts.notify import channels, repository
from alerts.notify.channels import PermanentError, TemporaryError, Webhook
from alerts.notify.messages import AlertFacts, BadRecipientError, alert_email, email_address, webhook_body
from alerts.notify.repository import AlertNow, OutboxRow
from alerts.notify.settings import NotifySettings
from core.logging import get_logger
from core.progress import Progress
from core.retry import DATABASE_DOWN, until_done
from core.supervision import error_detail, failure

log = get_logger("alerts.notify")

Clock = Callable[[], datetime]
DeliveryOutcome = Literal["sent", "retry", "failed", "cancelled", "deferred", "lost"]
LAST_ERROR_CAP: Final = 500

NOTIFICATIONS = Counter(
    "rpm_alerts_notifications_settled",
    "Outbox notifications settled by the sender, by channel and outcome "
    "(sent, retry, failed, cancelled, deferred, lost = taken over by another sender)",
    ["channel", "outcome"],
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def retry_delay_s(attempt: int, settings: NotifySettings) -> float:
    """Wait after failed attempt number `attempt` (1-based): doubling from the initial wait,
    capped (the same shape as core/retry.py's, kept in the table so it survives a restart)."""
    return float(min(settings.notify_retry_max_s, settings.notify_retry_initial_s * 2 ** max(0, attempt - 1)))


@dataclass(frozen=True)
class Decision:
    """What to do with a claimed row before any delivery."""

    action: Literal["send", "cancel", "defer", "fail"]
    until: datetime | None = None
    reason: str = ""


def triage(row: OutboxRow, now: datetime, settings: NotifySettings) -> Decision:
    """The re-check at send time (pure): an acknowledgement on any channel cancels what is
    still queued, a snooze postpones it, attempts run out."""
    if row.alert_state in ("acknowledged", "resolved"):
        return Decision("cancel", reason=f"alert {row.alert_state}")
    if row.alert_state == "snoozed" and row.snoozed_until is not None and row.snoozed_until > now:
        return Decision("defer", until=row.snoozed_until)
    if row.attempts >= settings.notify_max_attempts:
        what = "the last attempt did not finish (its sender stopped)" if row.abandoned else "no attempts left"
        return Decision("fail", reason=f"{what}; {row.attempts} attempts made")
    return Decision("send")


def recheck(alert: AlertNow, now: datetime) -> Decision:
    """The re-check under the lock, just before a delivery (pure): the alert may have been
    acknowledged, resolved or snoozed since the row was claimed, or its patient may have
    withdrawn sharing with the care team (ADR 0024)."""
    if not alert.shared:
        return Decision("cancel", reason="the patient no longer shares with the care team")
    if alert.state in ("acknowledged", "resolved"):
        return Decision("cancel", reason=f"alert {alert.state} before the send")
    if alert.state == "snoozed" and alert.snoozed_until is not None and alert.snoozed_until > now:
        return Decision("defer", until=alert.snoozed_until, reason="alert snoozed before the send")
    return Decision("send")


@dataclass
class _Handed:
    """Whether this attempt's message was handed to the relay or receiver, and how it went."""

    done: bool = False
    error: str | None = None
    permanent: bool = False


@dataclass
class OutboxSender:
    pool: AsyncConnectionPool[Any]
    settings: NotifySettings
    client: httpx.AsyncClient
    clock: Clock = utc_now
    progress: Progress | None = None
    _slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.settings.notify_concurrency)

    async def run_once(self) -> int:
        """One round: claim what is due, deliver, settle. Returns how many rows it claimed."""
        claimed = await until_done(DATABASE_DOWN)(self._claim)
        if claimed:
            async with asyncio.TaskGroup() as group:
                for row, attempt in claimed:
                    group.create_task(self._deliver_one(row, attempt))
        return len(claimed)

    async def _claim(self) -> list[tuple[OutboxRow, int]]:
        now = self.clock()
        lease_until = now + timedelta(seconds=self.settings.notify_lease_s)
        to_send: list[tuple[OutboxRow, int]] = []
        async with self.pool.connection() as conn, conn.transaction():
            for row in await repository.claim(conn, now, self.settings.notify_batch):
                decision = triage(row, now, self.settings)
                if decision.action == "cancel":
                    await repository.cancel(conn, row.id)
                elif decision.action == "defer":
                    assert decision.until is not None
                    await repository.defer(conn, row.id, decision.until)
                elif decision.action == "fail":
                    await repository.mark_failed(conn, row.id, None, decision.reason)
                else:
                    to_send.append((row, await repository.start_attempt(conn, row.id, lease_until)))
                    continue
                outcomes: dict[str, DeliveryOutcome] = {"cancel": "cancelled", "defer": "deferred", "fail": "failed"}
                self._count(row, outcomes[decision.action])
                log.info(
                    "notification not sent",
                    notification_id=row.id,
                    alert_id=row.alert_id,
                    channel=row.channel,
                    outcome=decision.action,
                    reason=decision.reason or None,
                )
        return to_send

    async def _deliver_one(self, row: OutboxRow, attempt: int) -> None:
        """The barrier: whatever this notification raises settles this notification only."""
        async with self._slots:
            handed = _Handed()
            try:
                await until_done(DATABASE_DOWN)(self._deliver_locked, row, attempt, handed)
            except Exception as exc:
                # Settling itself failed for a reason that is not an outage: the row stays
                # 'sending' and is taken up again when its lease ends.
                log.error("settling a notification failed", notification_id=row.id, **failure(exc))
            if self.progress is not None:
                self.progress.advanced()

    async def _deliver_locked(self, row: OutboxRow, attempt: int, handed: _Handed) -> None:
        """Re-check, deliver and settle in one transaction that holds the notification row
        and a share lock on its alert (repository.lock_for_send): an acknowledgement that
        committed before the lock cancels the delivery; one that comes during the delivery
        waits for it to be settled. After a database failure once the message was handed
        over, only the settlement is tried again: the message is not sent a second time."""
        async with self.pool.connection() as conn, conn.transaction():
            if handed.done:
                await self._settle(conn, row, attempt, handed.error, handed.permanent)
                return
            alert = await repository.lock_for_send(conn, row.id, attempt)
            if alert is None:  # the lease ended and another sender took the row
                self._count(row, "lost")
                log.warning("notification taken over by another sender", notification_id=row.id, attempt=attempt)
                return
            decision = recheck(alert, self.clock())
            if decision.action == "cancel":
                done = await repository.cancel_attempt(conn, row.id, attempt, decision.reason)
                self._not_sent(row, "cancelled" if done else "lost", decision.reason)
                return
            if decision.action == "defer":
                assert decision.until is not None
                done = await repository.defer_attempt(conn, row.id, attempt, decision.until)
                self._not_sent(row, "deferred" if done else "lost", decision.reason)
                return
            handed.error, handed.permanent = await self._attempt(row)
            handed.done = True
            await self._settle(conn, row, attempt, handed.error, handed.permanent)

    async def _attempt(self, row: OutboxRow) -> tuple[str | None, bool]:
        """One delivery: (None, False) delivered, else (the error, whether it is permanent)."""
        try:
            await self._send(row)
        except PermanentError as exc:
            return str(exc), True
        except TemporaryError as exc:
            return str(exc), False
        except Exception as exc:
            log.error("notification delivery raised", notification_id=row.id, **failure(exc))
            return f"internal error: {error_detail(exc)}", False
        return None, False

    def _not_sent(self, row: OutboxRow, outcome: DeliveryOutcome, reason: str) -> None:
        self._count(row, outcome)
        log.info(
            "notification not sent",
            notification_id=row.id,
            alert_id=row.alert_id,
            channel=row.channel,
            outcome=outcome,
            reason=reason or None,
            at="send time",
        )

    async def _send(self, row: OutboxRow) -> None:
        facts = AlertFacts(
            alert_id=row.alert_id,
            patient_id=row.patient_id,
            rule=row.rule,
            severity=row.severity,
            state=row.alert_state,
            opened_at=row.opened_at,
            tier=row.tier,
        )
        base = self.settings.notify_link_base
        if row.channel == "email":
            try:
                to = email_address(row.recipient)
            except BadRecipientError as exc:
                raise PermanentError(str(exc)) from exc
            message = alert_email(facts, to=to, sender=self.settings.notify_from, link_base=base, now=self.clock())
            await channels.send_email(self.settings, message, to.addr_spec)
        elif row.channel == "webhook":
            if row.webhook_url is None or row.webhook_secret is None:
                raise PermanentError(f"no webhook with id {row.recipient[:80]!r}")
            if not row.webhook_enabled:
                raise PermanentError(f"webhook {row.recipient} is disabled")
            body = webhook_body(facts, delivery_id=str(row.id), link_base=base)
            await channels.send_webhook(
                self.client,
                self.settings,
                Webhook(url=row.webhook_url, secret=row.webhook_secret),
                body,
                delivery_id=str(row.id),
                now_unix=int(self.clock().timestamp()),
            )
        else:  # the table's CHECK allows no other; a new channel needs code here first
            raise PermanentError(f"unknown channel {row.channel!r}")

    async def _settle(
        self, conn: AsyncConnection[Any], row: OutboxRow, attempt: int, error: str | None, permanent: bool
    ) -> None:
        now = self.clock()
        if error is None:
            outcome: DeliveryOutcome = "sent" if await repository.mark_sent(conn, row, attempt, now) else "lost"
        else:
            error = error[:LAST_ERROR_CAP]
            if permanent or attempt >= self.settings.notify_max_attempts:
                reason = error if permanent else f"{error} (attempt {attempt} of {attempt}, none left)"
                done = await repository.mark_failed(conn, row.id, attempt, reason)
                outcome = "failed" if done else "lost"
            else:
                due = now + timedelta(seconds=retry_delay_s(attempt, self.settings))
                outcome = "retry" if await repository.mark_retry(conn, row, attempt, due, error) else "lost"
        self._count(row, outcome)
        level = log.info if outcome == "sent" else log.warning
        level(
            "notification " + outcome,
            notification_id=row.id,
            alert_id=row.alert_id,
            channel=row.channel,
            tier=row.tier,
            attempt=attempt,
            error=error,
        )

    def _count(self, row: OutboxRow, outcome: DeliveryOutcome) -> None:
        NOTIFICATIONS.labels(row.channel, outcome).inc()


async def run_outbox(
    pool: AsyncConnectionPool[Any],
    settings: NotifySettings,
    *,
    clock: Clock = utc_now,
    progress: Progress | None = None,
) -> None:
    """Drain the outbox until cancelled (a supervised service task; it never returns).

    Rounds follow each other at once while rows keep coming, and `notify_poll_s` apart
    otherwise. `progress`, when given, hears of every settled notification (`advanced`)."""
    async with channels.webhook_client(settings) as client:
        sender = OutboxSender(pool, settings, client, clock, progress)
        while True:
            if await sender.run_once() < settings.notify_batch:
                await asyncio.sleep(settings.notify_poll_s)
