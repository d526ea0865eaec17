"""The fan-out of reading batches to independent lanes: a stalled lane does not hold the other
back (up to its backlog), a batch is acknowledged only when every lane is done with it, in
order, and a lane that raises does not stop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from streams.fanout import Fanout


async def _scenario() -> None:
    acked: list[int] = []
    fast_seen: list[int] = []
    slow_seen: list[int] = []
    gate = asyncio.Event()

    async def ack(event: int) -> None:
        acked.append(event)

    async def fast(events: Sequence[int]) -> None:
        fast_seen.extend(events)

    async def slow(events: Sequence[int]) -> None:
        await gate.wait()  # a database outage
        slow_seen.extend(events)

    fanout = Fanout([("detect", fast, 100), ("store", slow, 100)], ack=ack, backlog=10)
    fanout.start()
    try:
        for start in range(0, 9, 3):
            await fanout.submit([start, start + 1, start + 2])
        await asyncio.sleep(0.05)
        assert fast_seen == list(range(9))  # detection went on
        assert acked == []  # nothing acknowledged while storage waits
        # The stalled lane's backlog is full: the next batch waits.
        blocked = asyncio.create_task(fanout.submit([9, 10, 11]))
        await asyncio.sleep(0.05)
        assert not blocked.done()
        gate.set()
        await asyncio.wait_for(blocked, 1)
        await asyncio.sleep(0.05)
        assert slow_seen == list(range(12))
        assert acked == list(range(12))
    finally:
        await fanout.stop()


def test_a_stalled_lane_holds_acknowledgements_not_the_other_lane() -> None:
    asyncio.run(_scenario())


async def _raising() -> list[int]:
    acked: list[int] = []

    async def ack(event: int) -> None:
        acked.append(event)

    async def broken(events: Sequence[int]) -> None:
        raise RuntimeError("bug")

    fanout = Fanout([("detect", broken, 10)], ack=ack)
    fanout.start()
    try:
        await fanout.submit([1, 2])
        await fanout.submit([3])
        await asyncio.sleep(0.05)
    finally:
        await fanout.stop()
    return acked


def test_a_lane_that_raises_keeps_going() -> None:
    assert asyncio.run(_raising()) == [1, 2, 3]
