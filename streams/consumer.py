"""The one consumer setting Faust does not expose: how long a fetch may wait for data.

Faust builds its aiokafka consumer with `fetch_max_wait_ms=1500`. A standard Kafka broker
answers a fetch as soon as `fetch_min_bytes` (1 byte) is there, so that only bounds an idle
fetch; the embedded Tansu broker holds a fetch for up to the whole wait even with data
(measured: plain aiokafka consumer, median delivery 421 ms at 1,500 ms, 42 ms at 100 ms), and
every reading would then wait for it before detection. The worker's consumer thread therefore
sets the wait from `RPM_CONSUMER_FETCH_MAX_WAIT_MS` after Faust built the consumer, before it
starts. On a broker that answers early it only costs a few more empty fetches while idle.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from core.logging import get_logger

log = get_logger("streams.consumer")


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    fetch_max_wait_ms = 100

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        if hasattr(consumer, "_fetch_max_wait_ms"):
            consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        else:  # a future aiokafka: keep Faust's value rather than guess
            log.warning("cannot set the consumer's fetch wait; Faust's default applies")
        return consumer


def set_fetch_max_wait(app: faust.App, fetch_max_wait_ms: int) -> None:
    """Make the app's worker consumer wait at most this long for a fetch."""
    thread_class = type("ConsumerThread", (_ConsumerThread,), {"fetch_max_wait_ms": fetch_max_wait_ms})

    class Consumer(faust_aiokafka.Consumer):
        fetch_wait_ms = fetch_max_wait_ms

        def _new_consumer_thread(self) -> Any:
            return thread_class(self, loop=self.loop, beacon=self.beacon)

    # The transport's class attribute, overridden for this app's transport object only.
    setattr(app.transport, "Consumer", Consumer)  # noqa: B010
