"""The fan-out of reading batches to independent lanes: a stalled lane does not hold the other
back (up to its backlog), a batch is acknowledged only when every lane is done with it, in
order, and a lane that raises (a bug: handlers have their own barrier) ends the process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from core.supervision import EXIT_TASK_DIED
from streams.fanout import Fanout

ROOT = Path(__file__).resolve().parents[2]


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


RAISING_LANE = """
import asyncio
from streams.fanout import Fanout

async def main():
    async def ack(event):
        pass

    async def broken(events):
        raise RuntimeError("bug outside the barrier")

    fanout = Fanout([("detect", broken, 10)], ack=ack)
    fanout.start()
    await fanout.submit([1, 2])
    await asyncio.sleep(30)

asyncio.run(main())
"""


def test_a_lane_that_raises_ends_the_process_naming_it() -> None:
    done = subprocess.run([sys.executable, "-c", RAISING_LANE], capture_output=True, timeout=60, cwd=ROOT, check=False)
    assert done.returncode == EXIT_TASK_DIED
    err = done.stderr.decode()
    assert "task 'lane-detect' raised RuntimeError: bug outside the barrier" in err


async def _gathering(behind: int, gather_s: float = 2.0) -> tuple[list[list[int]], float, int]:
    """A lane of size 6; batches of 2 arrive 0.1 s apart while Kafka reports `behind` records.
    Returns the batches the lane handled, when it first ran, and how many batches had been
    submitted by then."""
    handled: list[list[int]] = []
    first_handled_after: list[float] = []
    submitted: list[int] = []
    submitted_before_first: list[int] = []

    async def ack(event: int) -> None:
        return None

    loop = asyncio.get_running_loop()
    started = loop.time()

    async def lane(events: Sequence[int]) -> None:
        if not handled:
            first_handled_after.append(loop.time() - started)
            submitted_before_first.append(len(submitted))
        handled.append(list(events))

    fanout = Fanout([("detect", lane, 6)], ack=ack, behind=lambda: behind, gather_above=100, gather_s=gather_s)
    fanout.start()
    try:
        for start in range(0, 6, 2):
            await fanout.submit([start, start + 1])
            submitted.append(start)
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.1)
    finally:
        await fanout.stop()
    return handled, first_handled_after[0], submitted_before_first[0]


def test_a_lane_that_is_behind_waits_for_a_full_batch() -> None:
    handled, first, _ = asyncio.run(_gathering(behind=5000))
    assert handled == [[0, 1, 2, 3, 4, 5]]  # one batch of the lane's size, not three of 2
    assert first >= 0.2


def test_a_lane_that_keeps_up_never_waits() -> None:
    handled, _, submitted = asyncio.run(_gathering(behind=10))  # under gather_above
    assert handled == [[0, 1], [2, 3], [4, 5]]
    assert submitted == 1  # the first batch was handled before the second arrived


def test_gathering_waits_no_longer_than_its_limit() -> None:
    handled, _, _ = asyncio.run(_gathering(behind=5000, gather_s=0.05))
    assert [e for batch in handled for e in batch] == list(range(6))
    assert len(handled) >= 2  # the last batch came 0.2 s after the first: not waited for
