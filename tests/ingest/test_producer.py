"""The bridge's batch producer: records land on the partition Kafka's default partitioner
(and so every other producer of the platform) picks for their key, in order, and the
batches are acknowledged by a real Kafka-protocol broker."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from hypothesis import given
from hypothesis import strategies as st

from core.wire import default_partition
from infra.stack import Stack
from ingest.producer import BatchProducer, Record
from tests.helpers import unique

# murmur2 of the Java client, from Kafka's UtilsTest: a record keyed so lands on
# (hash & 0x7FFFFFFF) % partitions in every Kafka client that uses the default partitioner.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "java_hash"), JAVA_MURMUR2.items())
@pytest.mark.parametrize("partitions", [1, 2, 4, 8, 13])
def test_partition_is_the_java_clients(key: bytes, java_hash: int, partitions: int) -> None:
    assert default_partition(key, partitions) == (java_hash & 0x7FFFFFFF) % partitions


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=64))
def test_partition_is_aiokafkas_default(key: bytes, partitions: int) -> None:
    from aiokafka.partitioner import DefaultPartitioner

    everything = list(range(partitions))
    assert default_partition(key, partitions) == DefaultPartitioner()(key, everything, everything)


def test_batches_land_where_send_puts_the_same_keys_and_keep_their_order(stack: Stack) -> None:
    topic = unique("test.partitioning")
    keys = [f"pt-{n}".encode() for n in range(40)]

    async def scenario() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 6, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            # The reference: aiokafka's own send() with its default partitioner.
            sent = [await producer.send(topic, key=key, value=b"reference") for key in keys]
            reference = {key: (await fut).partition for key, fut in zip(keys, sent, strict=True)}
            records: list[Record] = [(topic, key, b"%d" % n) for n in range(5) for key in keys]
            futures = await BatchProducer(producer).send(records)
            assert len(futures) <= 6  # one batch per partition: the whole list fits
            await asyncio.gather(*futures)
            # More than one producer batch (256 KiB by default) for one partition: still in order.
            big = [(topic, b"big", bytes([n]) * 60_000) for n in range(8)]
            futures = await BatchProducer(producer).send(big)
            assert len(futures) >= 2
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(6)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            seen: dict[bytes, list[tuple[int, bytes]]] = {}
            total = 0
            async with asyncio.timeout(30):
                while total < len(keys) * 6 + 8:
                    for tp, batch in (await consumer.getmany(timeout_ms=500)).items():
                        for record in batch:
                            assert record.key is not None
                            assert record.value is not None
                            seen.setdefault(record.key, []).append((tp.partition, record.value))
                            total += 1
        finally:
            await consumer.stop()
        for key in keys:
            assert {p for p, _v in seen[key]} == {reference[key]}
            assert {reference[key]} == {default_partition(key, 6)}
            assert [v for _p, v in seen[key]] == [b"reference", b"0", b"1", b"2", b"3", b"4"]
        assert [v[:1] for _p, v in seen[b"big"]] == [bytes([n]) for n in range(8)]
        assert {p for p, _v in seen[b"big"]} == {default_partition(b"big", 6)}

    asyncio.run(scenario())
