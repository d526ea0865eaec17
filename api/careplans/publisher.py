"""The API's Kafka producer for care plans: one record per stored version on the compacted
`rpm.care-plans.v1` (key = patient id, value = the plan's JSON, acks=all), sent with the
platform's bounded retry. It connects on first use, so the API comes up while Kafka is away;
a change then answers 503 and is not stored (ADR 0021)."""

from __future__ import annotations

import asyncio
from typing import Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from core.logging import get_logger
from core.retry import KAFKA_DOWN, bounded
from core.wire import CARE_PLANS

log = get_logger(__name__)

SEND_TIMEOUT_S: Final = 5.0
ATTEMPTS: Final = 3


class CarePlanPublishError(Exception):
    """Kafka did not acknowledge the plan after the retries."""


class CarePlanPublisher:
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
                    async with asyncio.timeout(SEND_TIMEOUT_S):
                        await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def _send_once(self, key: bytes, value: bytes) -> None:
        producer = await self._started()
        async with asyncio.timeout(SEND_TIMEOUT_S):
            await producer.send_and_wait(CARE_PLANS.name, value=value, key=key)

    async def publish(self, patient_id: str, value: bytes) -> None:
        """Send the plan and wait for Kafka's acknowledgement (retried, bounded)."""
        try:
            await bounded(KAFKA_DOWN, ATTEMPTS)(self._send_once, patient_id.encode(), value)
        except (KafkaError, TimeoutError, OSError) as exc:
            log.warning("care plan not published", error=type(exc).__name__)
            raise CarePlanPublishError(type(exc).__name__) from exc

    async def close(self) -> None:
        async with self._lock:
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None
