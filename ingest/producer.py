"""Producing the bridge's records to Kafka a batch at a time.

`producer.send()` costs a coroutine, a partitioner call (pure-Python murmur2), an
accumulator lookup and a future per record: about half of the bridge's time per message
when it was the path (ADR 0007). Here the records of one bridge batch are grouped by
topic and partition, appended to one `BatchBuilder` per partition and handed over with
`send_batch`, so the cost per record is one append; the caller waits on one future per
partition batch.

Partitions are chosen exactly as Kafka's default partitioner (Java client, librdkafka's
`murmur2_random`, aiokafka's `DefaultPartitioner`) chooses them for a keyed record:
`(murmur2(key) & 0x7FFFFFFF) % partition_count`, so a patient's records land on the
partition every other producer of the platform puts them on. Every record we produce has
a key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

from aiokafka import AIOKafkaProducer

from core.wire import default_partition

Record = tuple[str, bytes, bytes]  # Kafka topic, key, value

_CACHE_LIMIT: Final = 100_000


class BatchProducer:
    """Produces lists of records; see the module docstring."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._partition_of: dict[tuple[bytes, int], int] = {}

    async def _partition_count(self, topic: str) -> int:
        partitions = self._producer.client.cluster.partitions_for_topic(topic)
        if not partitions:  # metadata not loaded yet (or the topic is new): ask for it
            partitions = await self._producer.partitions_for(topic)
        return len(partitions)

    def partitioner(self, topic: str) -> Callable[[bytes], int] | None:
        """The partition of a key of `topic`, as `send` will choose it; None while the
        producer has no metadata of the topic yet (before its first send)."""
        partitions = self._producer.client.cluster.partitions_for_topic(topic)
        if not partitions:
            return None
        count = len(partitions)
        cache = self._partition_of
        if len(cache) > _CACHE_LIMIT:
            cache.clear()

        def partition_of(key: bytes) -> int:
            partition = cache.get((key, count))
            if partition is None:
                partition = cache[(key, count)] = default_partition(key, count)
            return partition

        return partition_of

    async def send(self, records: list[Record]) -> list[asyncio.Future[Any]]:
        """Queue the records; the futures resolve when Kafka acknowledged them (or fail).
        Records of one partition keep their order. Waits while the producer's queue for a
        partition is full; raises what the producer raises (KafkaTimeoutError...)."""
        if not records:
            return []
        groups: dict[tuple[str, int], list[tuple[bytes, bytes]]] = {}
        counts: dict[str, int] = {}
        cache = self._partition_of
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        for topic, key, value in records:
            count = counts.get(topic)
            if count is None:
                count = counts[topic] = await self._partition_count(topic)
            partition = cache.get((key, count))
            if partition is None:
                partition = cache[(key, count)] = default_partition(key, count)
            group = groups.get((topic, partition))
            if group is None:
                groups[(topic, partition)] = [(key, value)]
            else:
                group.append((key, value))
        producer = self._producer
        futures: list[asyncio.Future[Any]] = []
        for (topic, partition), entries in groups.items():
            builder = producer.create_batch()
            for key, value in entries:
                if builder.append(timestamp=None, key=key, value=value) is None:
                    # Full: the first record of a new builder always fits.
                    futures.append(await producer.send_batch(builder, topic, partition=partition))
                    builder = producer.create_batch()
                    builder.append(timestamp=None, key=key, value=value)
            futures.append(await producer.send_batch(builder, topic, partition=partition))
        return futures
