"""One consumer of `rpm.readings.v1`, several independent lanes (storage, detection).

Why not one Faust agent per job: two agents subscribed to the same topic in one app share
each Kafka message (reference count 2). When a rebalance starts, Faust empties the agents'
input queues; a message one agent already took while the other agent's copy was dropped keeps
a reference count of 1 forever, and the rebalance waits for it without end ("wait_empty:
Waiting for tasks"). Seen here when a worker was killed with -9 under load. So the worker
has one agent on the topic, which takes batches without acknowledging them
(`Stream.noack_take`) and hands each batch to every lane:

- each lane is its own task with its own queue, batching (it merges queued batches up to
  its own size), retries and dead letters, so a stalled lane (storage during a database
  outage) does not hold the other back until its backlog (`backlog` records) is full;
- a batch's events are acknowledged when the last lane is done with them; lanes work in
  order, so acknowledgements (and committed offsets) advance in order;
- a lane handler must not raise: it has its own barrier per record and dead-letters what it
  gives up on (`streams.dead_letters`). If one raises anyway, that is a bug the lane cannot
  see past: its task ends, and the lanes' `core.supervision.Supervisor` ends the process
  (exit 70, naming the lane). The batch is not acknowledged, so it is processed again.

Gathering: a lane works through whatever is queued when it becomes free, so a lane that is
behind would take batches of about what the consumer delivers in one `take` interval, and pay
its per-patient costs (state decode, detectors' fixed work, state save) for every few records.
When the worker knows that at least `gather_above` more records wait in Kafka (`behind()`,
from the consumer's high-water marks), a free lane waits up to `gather_s` for queued batches
to reach its size: the records are already there, so the wait costs no latency, and one state
save then covers several records of each patient. A worker that keeps up never waits.

For lanes that never wait on each other, run the roles in separate workers with different
application ids (`RPM_STREAMS_ROLES`, `RPM_STREAMS_APP_ID`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.logging import get_logger
from core.supervision import Supervisor
from streams import metrics
from streams.supervision import PROCESS

log = get_logger("streams.fanout")

Handler = Callable[[Sequence[Any]], Awaitable[object]]  # events -> done (raises only on a bug)
Ack = Callable[[Any], Awaitable[object]]


@dataclass(eq=False)
class _Batch:
    events: list[Any]
    pending: int


@dataclass(eq=False)
class Lane:
    name: str
    handle: Handler
    max_events: int
    queue: asyncio.Queue[_Batch] = field(init=False)
    waiting: int = 0  # events queued, not yet handled
    drained: asyncio.Event = field(init=False)
    task: asyncio.Task[None] | None = field(default=None, init=False)


GATHER_POLL_S = 0.02


def _never_behind() -> int:
    return 0


class Fanout:
    def __init__(
        self,
        lanes: Sequence[tuple[str, Handler, int]],
        ack: Ack,
        backlog: int = 100_000,
        *,
        behind: Callable[[], int] = _never_behind,
        gather_above: int = 1000,
        gather_s: float = 0.5,
    ) -> None:
        if not lanes:
            raise ValueError("a fan-out needs at least one lane")
        self._lanes = [Lane(name, handle, max_events) for name, handle, max_events in lanes]
        self._ack = ack
        self._backlog = backlog
        self._behind = behind
        self._gather_above = gather_above
        self._gather_s = gather_s
        self._ack_lock = asyncio.Lock()
        self._supervisor: Supervisor | None = None

    def start(self) -> None:
        self._supervisor = Supervisor(PROCESS)
        for lane in self._lanes:
            lane.queue = asyncio.Queue()
            lane.waiting = 0
            lane.drained = asyncio.Event()
            lane.task = self._supervisor.spawn(self._run(lane), name=f"lane-{lane.name}")

    async def stop(self) -> None:
        """Cancel the lanes; batches not finished stay unacknowledged (processed again later)."""
        if self._supervisor is not None:
            await self._supervisor.stop()
            self._supervisor = None
        for lane in self._lanes:
            lane.task = None

    async def submit(self, events: Sequence[Any]) -> None:
        """Hand a batch to every lane; waits while a lane has `backlog` records waiting."""
        if not events:
            return
        batch = _Batch(list(events), len(self._lanes))
        for lane in self._lanes:
            while lane.waiting and lane.waiting + len(batch.events) > self._backlog:
                lane.drained.clear()
                await lane.drained.wait()
            lane.waiting += len(batch.events)
            lane.queue.put_nowait(batch)
            metrics.LANE_BACKLOG.labels(lane=lane.name).set(lane.waiting)

    async def _gather(self, lane: Lane) -> tuple[list[_Batch], int]:
        """The queued batches up to the lane's size; waits (bounded) for more when Kafka holds
        enough records to fill it."""
        batches = [await lane.queue.get()]
        size = len(batches[0].events)
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while size < lane.max_events:
            if not lane.queue.empty():
                batches.append(lane.queue.get_nowait())
                size += len(batches[-1].events)
                continue
            if self._gather_s <= 0 or self._behind() < self._gather_above:
                break
            if deadline is None:
                deadline = loop.time() + self._gather_s
            if loop.time() >= deadline:
                break
            # Polled rather than awaited with a timeout, which could drop a batch taken
            # from the queue in the instant the timeout fires.
            await asyncio.sleep(GATHER_POLL_S)
        if deadline is not None:
            metrics.LANE_GATHERED.labels(lane=lane.name).inc()
        return batches, size

    async def _run(self, lane: Lane) -> None:
        while True:
            batches, size = await self._gather(lane)
            await lane.handle([e for b in batches for e in b.events])
            lane.waiting -= size
            lane.drained.set()
            metrics.LANE_BACKLOG.labels(lane=lane.name).set(lane.waiting)
            await self._done(batches)

    async def _done(self, batches: list[_Batch]) -> None:
        async with self._ack_lock:
            for batch in batches:
                batch.pending -= 1
                if batch.pending == 0:
                    for event in batch.events:
                        await self._ack(event)
