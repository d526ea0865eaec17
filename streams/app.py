"""The Faust application factory: topics, agents and the worker's lifecycle hooks."""

from __future__ import annotations

from typing import Any

import faust

from core.logging import get_logger
from core.wire import READINGS, REJECTED
from streams import metrics
from streams.settings import StreamsSettings
from streams.storage.agents import store_stream
from streams.storage.service import StorageWriter

log = get_logger("streams.app")


def create_app(settings: StreamsSettings | None = None) -> faust.App:
    s = settings or StreamsSettings()
    app = faust.App(
        s.streams_app_id,
        broker=[f"kafka://{server.strip()}" for server in s.kafka_bootstrap.split(",")],
        datadir=s.streams_data_dir,
        web_enabled=False,
        topic_partitions=READINGS.partitions,
        topic_allow_declare=False,
        topic_disable_leader=True,
        broker_session_timeout=s.session_timeout_s,
        broker_heartbeat_interval=s.heartbeat_interval_s,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=8192,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
    )
    readings = app.topic(
        READINGS.name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=READINGS.partitions,
    )
    rejected = app.topic(
        REJECTED.name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=REJECTED.partitions,
    )
    writer = StorageWriter(s.database_url.get_secret_value())

    @app.agent(readings, name="store-readings")
    async def store_readings(stream: Any) -> Any:
        async for stored in store_stream(stream, writer, rejected, s.storage_batch_max, s.storage_batch_within_s):
            yield stored

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]  # faust's timer decorator is untyped
    async def report_up() -> None:
        assigned = app.consumer.assignment() if app.consumer is not None else set()
        metrics.UP.set(1 if assigned else 0)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode types receivers narrower than it calls them
    async def close_writer(_sender: Any, *_args: Any, signal: Any, **_kw: Any) -> None:
        metrics.UP.set(0)
        await writer.close()

    return app
