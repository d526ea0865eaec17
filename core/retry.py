"""The platform's one way to retry: `stamina`, with two policies, used by the bridge and the
stream worker alike.

- `until_done`: infrastructure a process cannot do without (the database, Kafka). It is
  retried for as long as it takes, with exponential backoff and jitter capped at
  `WAIT_MAX_S`: nothing is acknowledged meanwhile, so nothing is lost, and readiness
  (`rpm_<component>_ready`, core/progress.py) reports the stall.
- `bounded`: work that may fail for a reason of its own (a publish the broker keeps refusing,
  one record); after the attempts the caller dead-letters it.

Only the given exception types are retried; anything else is not an outage and goes to the
caller's barrier at once. stamina logs each scheduled retry (`stamina.retry_scheduled`); we count
it in `rpm_retries_total{callable, error_type}` (stamina's own Prometheus counter,
`stamina_retries_total`, is turned off here: every metric of ours carries the `rpm_` prefix, and
its `retry_num` label grows without bound during an outage).
"""

from __future__ import annotations

import asyncio
from typing import Final

import psycopg
import stamina
from aiokafka.errors import KafkaError
from prometheus_client import Counter
from stamina.instrumentation import RetryDetails, StructlogOnRetryHook, set_on_retry_hooks

WAIT_INITIAL_S: Final = 0.1
WAIT_MAX_S: Final = 5.0

Errors = tuple[type[Exception], ...]

# The database is away (outage, restart, network): not the data's fault.
DATABASE_DOWN: Final[Errors] = (psycopg.OperationalError, psycopg.InterfaceError, OSError)
# Kafka did not take a record (broker away, request timed out).
KAFKA_DOWN: Final[Errors] = (KafkaError, asyncio.TimeoutError, OSError)


RETRIES: Final = Counter(
    "rpm_retries", "Retries scheduled by core.retry, by retried callable and error type", ["callable", "error_type"]
)


def _count_retry(details: RetryDetails) -> None:
    RETRIES.labels(callable=details.name, error_type=type(details.caused_by).__name__).inc()


# Process-wide, like stamina's defaults it replaces: our counter and stamina's structlog line.
set_on_retry_hooks([_count_retry, StructlogOnRetryHook])


def until_done(on: Errors) -> stamina.BoundAsyncRetryingCaller:
    """`await until_done(errors)(fn, *args)`: attempts until one succeeds."""
    return stamina.AsyncRetryingCaller(
        attempts=None, timeout=None, wait_initial=WAIT_INITIAL_S, wait_max=WAIT_MAX_S
    ).on(on)


def bounded(on: Errors, attempts: int) -> stamina.BoundAsyncRetryingCaller:
    """`await bounded(errors, n)(fn, *args)`: at most `attempts`; the last exception propagates."""
    return stamina.AsyncRetryingCaller(
        attempts=max(1, attempts), timeout=None, wait_initial=0.2, wait_max=WAIT_MAX_S
    ).on(on)


__all__ = ["DATABASE_DOWN", "KAFKA_DOWN", "bounded", "until_done"]
