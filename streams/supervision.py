"""No part of the worker dies quietly.

Faust restarts a crashed agent and keeps the worker up: an agent body that raises is logged
("Crashed reason=..."), its actor marked crashed, and the agent's supervisor (mode's
`OneForOneSupervisor` by default) starts a new actor on the same stream. The event that was
being processed counts as acknowledged, and events a crashed actor took without
acknowledging them (`noack_take`) leave a gap that holds the committed offset back for good.
A timer that raises crashes the app service through mode's `Service.crash`, which may or may
not take the worker down. Neither is what the platform promises (ARCHITECTURE.md §8).

So every agent body and timer of the worker runs inside `agent()` / `timer()` below, and the
lanes inside `core.supervision.Supervisor`: whatever ends one of them while the app is not
stopping (an exception, a return, a cancellation by someone else) logs one critical line
naming it and ends the process at once with exit code 70 (`core.supervision.die`). Nothing
that was not processed was acknowledged, so the next worker of the group (or this one,
restarted) processes it again. The per-record barriers (`streams.dead_letters`) make sure an
input cannot cause this; what is left is a bug or an outage the worker cannot see past.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from core.logging import get_logger
from core.supervision import die, error_detail, safe_text

log = get_logger("streams.supervision")

PROCESS = "streams"
T = TypeVar("T")


def ended(what: str, how: str, exc: BaseException | None = None) -> None:
    """Log the death of part of the worker and end the process (never returns)."""
    log.critical(
        "supervised task ended unexpectedly; the process exits",
        process=PROCESS,
        task=what,
        ended=safe_text(how),
        traceback=safe_text("".join(traceback.format_exception(exc))) if exc is not None else None,
    )
    die(PROCESS, safe_text(f"task {what!r} {how}"))


async def agent(app: Any, name: str, body: AsyncIterator[T]) -> AsyncIterator[T]:
    """An agent body that ends the process if it ends while the app is not stopping."""
    what = f"agent-{name}"
    try:
        async for value in body:
            yield value
    except asyncio.CancelledError:
        if not app.should_stop:
            ended(what, "was cancelled")
        raise
    except Exception as exc:
        ended(what, f"raised {error_detail(exc)}", exc)
    if not app.should_stop:
        ended(what, "returned")


def timer(app: Any, name: str, fun: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
    """A timer body that ends the process if it raises while the app is not stopping."""
    what = f"timer-{name}"

    async def run() -> None:
        try:
            await fun()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not app.should_stop:
                ended(what, f"raised {error_detail(exc)}", exc)
            raise

    run.__name__ = run.__qualname__ = name
    return run


__all__ = ["PROCESS", "agent", "ended", "timer"]
