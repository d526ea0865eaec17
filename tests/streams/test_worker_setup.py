"""What the worker sets up against the real broker and database before it runs: its changelog
topics (partition counts of the source, refusing a mismatch) and device classes."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import SecretStr

from infra.stack import Stack
from streams.app import create_app
from streams.changelogs import changelog_topics, ensure_changelog_topics
from streams.detection.repository import DeviceClasses
from streams.settings import StreamsSettings


def _settings(stack: Stack, app_id: str) -> StreamsSettings:
    return StreamsSettings(
        streams_app_id=app_id,
        kafka_bootstrap=stack.kafka_bootstrap,
        database_url=SecretStr(stack.db_url("streams")),
    )


async def _partitions(bootstrap: str, names: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(names)}
    finally:
        await admin.close()


async def _create(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


def test_changelog_topics_are_created_with_the_source_partition_count(stack: Stack) -> None:
    app = create_app(_settings(stack, f"rpm-test-{uuid.uuid4().hex[:8]}"))
    wanted = changelog_topics(app)
    assert sorted(wanted) == sorted(f"{app.conf.id}-{t}-changelog" for t in ("care-plans", "detector-state"))
    created = asyncio.run(ensure_changelog_topics(app, stack.kafka_bootstrap))
    assert sorted(created) == sorted(wanted)
    assert asyncio.run(_partitions(stack.kafka_bootstrap, list(wanted))) == dict.fromkeys(wanted, 8)
    assert asyncio.run(ensure_changelog_topics(app, stack.kafka_bootstrap)) == []  # idempotent


def test_a_changelog_topic_with_another_partition_count_is_refused(stack: Stack) -> None:
    app = create_app(_settings(stack, f"rpm-test-{uuid.uuid4().hex[:8]}"))
    name = f"{app.conf.id}-detector-state-changelog"
    asyncio.run(_create(stack.kafka_bootstrap, name, 3))
    with pytest.raises(RuntimeError, match="has 3 partitions, its table needs 8"):
        asyncio.run(ensure_changelog_topics(app, stack.kafka_bootstrap))


def test_the_worker_consumer_waits_briefly_for_fetches(stack: Stack) -> None:
    app = create_app(_settings(stack, f"rpm-test-{uuid.uuid4().hex[:8]}"))
    assert app.transport.Consumer.fetch_wait_ms == 100  # not Faust's 1,500 ms (streams/consumer.py)


def test_a_storage_only_worker_has_no_tables(stack: Stack) -> None:
    settings = _settings(stack, f"rpm-test-{uuid.uuid4().hex[:8]}")
    app = create_app(settings.model_copy(update={"streams_roles": "store"}))
    assert changelog_topics(app) == {}


def test_device_classes_come_from_the_devices_table(stack: Stack, db: psycopg.Connection) -> None:
    cuff = f"cuff-{uuid.uuid4().hex[:8]}"
    db.execute("INSERT INTO devices (id, device_class) VALUES (%s, 'bp_cuff')", (cuff,))

    async def lookups() -> tuple[dict[str, str], dict[str, str]]:
        classes = DeviceClasses(stack.db_url("streams"))
        try:
            first = await classes.classes_of([cuff, "not-provisioned"])
            db.execute("UPDATE devices SET device_class = 'scale' WHERE id = %s", (cuff,))
            second = await classes.classes_of([cuff])  # cached: one query per device, not per batch
            return first, second
        finally:
            await classes.close()

    first, second = asyncio.run(lookups())
    assert first == {cuff: "bp_cuff"}
    assert second == {cuff: "bp_cuff"}


def test_device_classes_answer_from_the_cache_while_the_database_is_unreachable() -> None:
    async def lookup() -> dict[str, str]:
        classes = DeviceClasses("postgresql://nobody:nothing@127.0.0.1:9/none", retry_s=60)
        try:
            return await classes.classes_of(["w1"])
        finally:
            await classes.close()

    assert asyncio.run(lookup()) == {}


def test_fault_injection_is_refused_in_production_and_must_name_a_point() -> None:
    with pytest.raises(ValueError, match="refused in production"):
        StreamsSettings(
            environment="production",
            database_url="postgresql://rpm_streams_login:s3cret-db-pw@db/rpm",
            streams_fault_inject="lane-store",
        )
    with pytest.raises(ValueError, match="must be one of"):
        StreamsSettings(streams_fault_inject="everywhere")
    in_test = StreamsSettings(
        environment="test",
        database_url="postgresql://rpm_streams_login:s3cret-db-pw@db/rpm",  # placeholders: development only
        streams_fault_inject="lane-store",
    )
    assert in_test.streams_fault_inject == "lane-store"
