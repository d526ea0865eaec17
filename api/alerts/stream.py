"""The live alert stream: PostgreSQL LISTEN/NOTIFY fanned out to server-sent events.

Every new `alert_events` row fires a notification on `rpm_alert_events` (trigger of migration
0006; the payload is ids only). Each API process holds one dedicated listening connection
(`AlertEventHub`), reads each notified row once with its own rights, and hands it to every
connected client's bounded queue; each client's generator (`alert_event_stream`) checks the
patient against the caller's scope before sending it. A client that does not keep up (its
queue full) is dropped, never the process: its browser reconnects with `Last-Event-ID`.

The listener is supervised: a lost connection is logged and re-opened with backoff, and
every client is then told to catch up from the database (ids above the last one it sent),
so a restart of the database loses no event. An unexpected end of the listening task is
logged as critical.

A patient giving or withdrawing sharing with their care team (ADR 0024) notifies the same
channel with `{"scopes_changed": true}` (trigger of migration 0015): every client re-reads its
scope before the next event, so a withdrawal reaches open streams at once, not at the next
periodic refresh.

The SSE `id:` of an event is its `alert_events.id`. A client resuming with an id first gets
the rows in scope above it from the database, then live ones; a bounded set of the ids sent
keeps the two from sending one twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from types import FrameType
from typing import Any, Final

import psycopg
from psycopg_pool import PoolTimeout

from api.alerts import repository
from api.db import Pool
from api.metrics import SSE_CLIENTS
from core.logging import get_logger

CHANNEL: Final = "rpm_alert_events"
HEARTBEAT_S: Final = 15.0
QUEUE_SIZE: Final = 256
SCOPE_REFRESH_S: Final = 30.0
REPLAY_BATCH: Final = 500
RECENT_IDS: Final = 4096
RETRY_MS: Final = 3000

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Resync:
    """Told to every client after the listener reconnected: events may have been missed."""


@dataclass(frozen=True, slots=True)
class ScopesChanged:
    """Told to every client when a patient gave or withdrew sharing: re-read the scope."""


@dataclass(eq=False, slots=True)
class Subscriber:
    queue: asyncio.Queue[dict[str, Any] | Resync | ScopesChanged | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE)
    )
    dropped: bool = False


class AlertEventHub:
    """One process's listener of `rpm_alert_events` and its connected clients."""

    def __init__(self, conninfo: str, pool: Pool, *, max_backoff_s: float = 30.0) -> None:
        self._conninfo = conninfo
        self._pool = pool
        self._max_backoff = max_backoff_s
        self._subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._closing = False
        self._hooked: dict[int, tuple[Any, Any]] = {}
        self.connected = asyncio.Event()
        self.reconnects = 0

    @property
    def clients(self) -> int:
        """How many SSE clients this process serves now."""
        return len(self._subscribers)

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._supervise(), name="alert-event-listener")
        self._task.add_done_callback(self._ended)
        self._hook_exit_signals()

    def _hook_exit_signals(self) -> None:
        """End every stream when the server is told to stop. uvicorn waits for open responses
        before it runs the lifespan's shutdown, and a stream never ends by itself: without
        this, a stopping process would wait for its SSE clients until it is killed."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue

            def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self.close_streams)
                previous(signum, frame)

            signal.signal(sig, handler)
            self._hooked[sig] = (handler, previous)

    def close_streams(self) -> None:
        """End every client's stream now, and any opened from now on."""
        self._closing = True
        for sub in list(self._subscribers):
            self._drop(sub)

    async def stop(self) -> None:
        self._stopping = True
        for sig, (handler, previous) in self._hooked.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, previous)
        self._hooked.clear()
        self.close_streams()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _ended(self, task: asyncio.Task[None]) -> None:
        if self._stopping or task.cancelled():
            return
        exc = task.exception()
        # Loud: without this task the process's inboxes would silently stop updating.
        log.critical("alert event listener ended unexpectedly; live inboxes of this process stop", error=repr(exc))
        for sub in list(self._subscribers):
            self._drop(sub)

    def subscribe(self) -> Subscriber:
        sub = Subscriber()
        if self._closing:
            sub.queue.put_nowait(None)
        else:
            self._subscribers.add(sub)
            SSE_CLIENTS.inc()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._forget(sub)

    def _forget(self, sub: Subscriber) -> None:
        if sub in self._subscribers:
            self._subscribers.discard(sub)
            SSE_CLIENTS.dec()

    def _drop(self, sub: Subscriber) -> None:
        """End a client's stream: it gets a `None` after what it already has is cleared."""
        sub.dropped = True
        self._forget(sub)
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(None)

    def _fan_out(self, item: dict[str, Any] | Resync | ScopesChanged) -> None:
        for sub in list(self._subscribers):
            try:
                sub.queue.put_nowait(item)
            except asyncio.QueueFull:
                log.warning("slow alert stream client dropped", queue_size=QUEUE_SIZE)
                self._drop(sub)

    async def _supervise(self) -> None:
        backoff = 0.5
        first = True
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    if not first:
                        log.info("alert event listener reconnected", reconnects=self.reconnects)
                        self._fan_out(Resync())
                    first, backoff = False, 0.5
                    async for notice in conn.notifies():
                        await self._deliver(notice.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("alert event listener lost its connection; reconnecting", error=repr(exc), wait_s=backoff)
            self.connected.clear()
            self.reconnects += 1
            first = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def _deliver(self, payload: str) -> None:
        if not self._subscribers:
            return
        try:
            notice = json.loads(payload)
            if isinstance(notice, dict) and notice.get("scopes_changed") is True:
                self._fan_out(ScopesChanged())
                return
            event_id = int(notice["id"])
        except (ValueError, KeyError, TypeError):
            log.warning("alert event notification not understood", payload_length=len(payload))
            return
        try:
            async with self._pool.connection() as conn:
                row = await repository.stream_event(conn, event_id)
        except (psycopg.Error, TimeoutError) as exc:
            # The clients read what they missed themselves.
            log.warning("alert event not read; clients catch up from the database", error=repr(exc))
            self._fan_out(Resync())
            return
        if row is not None:
            self._fan_out(row)


def format_event(row: dict[str, Any]) -> str:
    """One SSE event: `id:` the history row's id, `data:` the event as JSON."""

    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, uuid.UUID):
            return str(value)
        return value

    data = {key: plain(value) for key, value in row.items()}
    return f"id: {row['id']}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@dataclass(slots=True)
class StreamScope:
    """Whose events a client may get: an admin every patient's, a clinician their care teams'
    (re-read every SCOPE_REFRESH_S, so a change of care team reaches open streams)."""

    user_id: uuid.UUID | None
    patients: frozenset[str] = frozenset()
    read_at: float = 0.0

    async def refresh(self, pool: Pool) -> None:
        if self.user_id is None:
            return
        async with pool.connection() as conn:
            self.patients = await repository.team_patients(conn, self.user_id)
        self.read_at = time.monotonic()

    def due(self) -> bool:
        return self.user_id is not None and time.monotonic() - self.read_at > SCOPE_REFRESH_S

    def covers(self, patient_id: str | None) -> bool:
        return self.user_id is None or (patient_id is not None and patient_id in self.patients)


async def alert_event_stream(
    hub: AlertEventHub,
    pool: Pool,
    scope: StreamScope,
    last_event_id: int | None,
    *,
    heartbeat_s: float = HEARTBEAT_S,
) -> AsyncIterator[str]:
    """The SSE text of one client: a replay of the events in scope after `last_event_id` (when
    given), then live events in scope, with a comment every `heartbeat_s` seconds. For the
    JSON route and the inbox page alike; the caller has authenticated and audited."""
    sub = hub.subscribe()  # before the replay: nothing committed meanwhile is missed
    recent: deque[int] = deque(maxlen=RECENT_IDS)
    seen: set[int] = set()
    last = 0

    def mark(event_id: int) -> None:
        if len(recent) == recent.maxlen:
            seen.discard(recent[0])
        recent.append(event_id)
        seen.add(event_id)

    async def catch_up() -> AsyncIterator[str]:
        """The events in scope above `last`, from the database."""
        nonlocal last
        while True:
            async with pool.connection() as conn:
                rows = await repository.stream_events_after(conn, scope.user_id, last, REPLAY_BATCH)
            for row in rows:
                if row["id"] not in seen:
                    mark(row["id"])
                    yield format_event(row)
                last = max(last, row["id"])
            if len(rows) < REPLAY_BATCH:
                return

    try:
        await scope.refresh(pool)
        yield f"retry: {RETRY_MS}\n: connected\n\n"
        if last_event_id is None:
            # Live from now; a catch-up after a reconnect of the listener starts here.
            async with pool.connection() as conn:
                last = await repository.last_event_id(conn)
        else:
            last = last_event_id
            async for text in catch_up():
                yield text
        while True:
            try:
                item = await asyncio.wait_for(sub.queue.get(), timeout=heartbeat_s)
            except TimeoutError:
                yield ": heartbeat\n\n"
                continue
            if item is None:  # dropped: too slow, or the process is stopping
                return
            if scope.due() or isinstance(item, ScopesChanged):
                await scope.refresh(pool)
            if isinstance(item, ScopesChanged):
                continue
            if isinstance(item, Resync):
                async for text in catch_up():
                    yield text
                continue
            if item["id"] in seen or not scope.covers(item.get("patient_id")):
                continue
            mark(item["id"])
            last = max(last, item["id"])
            yield format_event(item)
    except (psycopg.Error, PoolTimeout) as exc:
        # The client reconnects with Last-Event-ID and is replayed what it missed.
        log.warning("alert stream ended: the database is not reachable", error=type(exc).__name__)
    finally:
        hub.unsubscribe(sub)
