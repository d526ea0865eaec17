"""The API's Kafka producer for readings entered by people (check-ins).

It writes `rpm.readings.v1` in the bridge's wire format (`core.wire.ReadingBatch`, key = the
patient id, acks=all), so the stream worker stores and scores a check-in like a device's
reading. Created by the app's lifespan; it connects on first use, not at start-up, so the API
comes up (and answers everything else) while Kafka is away; a check-in then answers 503.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from api.checkins.service import PublishError
from core.logging import get_logger
from core.wire import READINGS, ReadingBatch, encode

log = get_logger(__name__)

SEND_TIMEOUT_S = 10.0


class ReadingsPublisher:
    def __init__(self, bootstrap: str, *, idempotent: bool) -> None:
        self._bootstrap = bootstrap
        self._idempotent = idempotent
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    acks="all",
                    enable_idempotence=self._idempotent,
                    request_timeout_ms=int(SEND_TIMEOUT_S * 1000),
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def publish(self, batch: ReadingBatch) -> None:
        """Send one batch keyed by its patient and wait for Kafka's acknowledgement."""
        try:
            producer = await self._started()
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await producer.send_and_wait(READINGS.name, value=encode(batch), key=batch.patient_id.encode())
        except (KafkaError, TimeoutError, OSError) as exc:
            log.warning("check-in not published", error=type(exc).__name__)
            raise PublishError(type(exc).__name__) from exc

    async def close(self) -> None:
        async with self._lock:
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None
