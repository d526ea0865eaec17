"""The worker's own Kafka topics: the changelog topics of its Faust tables.

The application does not let Faust declare topics (`topic_allow_declare=False`): a topic the
broker creates on first use gets the broker's default partition count, and a table whose
changelog has a different partition count than its source topic makes the worker crash with
`PartitionsMismatch` (reference/environment.md). So the worker creates its changelog topics
itself before it starts, compacted and with the partition count of the source topic, and
refuses to start when one exists with another count.
"""

from __future__ import annotations

from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from core.logging import get_logger

log = get_logger("streams.changelogs")


def changelog_topics(app: Any) -> dict[str, int]:
    """Changelog topic name -> partition count, for every table of the app."""
    return {
        table.changelog_topic.get_topic_name(): int(table.partitions or app.conf.topic_partitions)
        for table in app.tables.values()
    }


async def ensure_changelog_topics(app: Any, bootstrap: str) -> list[str]:
    """Create missing changelog topics; returns the names created."""
    wanted = changelog_topics(app)
    if not wanted:
        return []
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, partitions, 1, topic_configs={"cleanup.policy": "compact"})
            for name, partitions in wanted.items()
            if name not in existing
        ]
        if missing:
            response = await admin.create_topics(missing)
            # 36 = TOPIC_ALREADY_EXISTS: another worker created it first.
            errors = [f"{err[0]}: {err[2] or err[1]}" for err in response.topic_errors if err[1] not in (0, 36)]
            if errors:
                raise RuntimeError("creating changelog topics failed: " + "; ".join(errors))
        present = [name for name in wanted if name in existing]
        if present:
            for description in await admin.describe_topics(present):
                name = description["topic"]
                count = len(description["partitions"])
                if count != wanted[name]:
                    raise RuntimeError(
                        f"changelog topic {name} has {count} partitions, its table needs {wanted[name]}: "
                        "recreate it with that count (the table's state starts afresh) or change the application id"
                    )
    finally:
        await admin.close()
    created = [t.name for t in missing]
    if created:
        log.info("changelog topics created", topics=created)
    return created
