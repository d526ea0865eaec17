"""The Faust application factory: topics, tables, agents, the timer and lifecycle hooks.

Agents:
- `readings`: batches of `rpm.readings.v1`, handed to independent lanes (`streams.fanout`
  says why one agent and not one per job): `store` (role "store", batches into TimescaleDB)
  and `detect` (role "detect", batches through the detectors, detections to
  `rpm.detections.v1`); a batch is acknowledged once every lane is done with it;
- `care-plans` (role "detect"): the compacted `rpm.care-plans.v1` into the care-plan table;
- `device-events` (role "store"): `rpm.device-events.v1` into the `devices` table (the battery
  a device last reported; `streams.devices`).

Tables (role "detect"), both keyed by patient id and co-partitioned with the readings
(8 partitions, changelog topics created by `streams.changelogs`): `care-plans` (plan JSON)
and `detector-state` (per-patient detector state, saved once per batch).

A timer runs the clock-driven detectors (missed measurements and doses, silent devices)
for the patients of the partitions this worker owns.

Every agent, timer and lane is supervised (`streams.supervision`): if one ends while the app
is not stopping, the process exits with code 70 and a log line naming it. Readiness comes
from progress (`core.progress`, `rpm_streams_ready`): the records of the worker's partitions
not yet finished (in Kafka beyond the last one acknowledged, lane backlogs included; care-plan
and device-event records likewise) against
the time the worker last finished one.
"""

from __future__ import annotations

from typing import Any

import faust

from core.logging import get_logger
from core.wire import CARE_PLANS, DETECTIONS, DEVICE_EVENTS, READINGS, REJECTED
from streams import metrics, supervision
from streams.careplans.agents import apply_care_plans
from streams.careplans.service import PlanBook
from streams.consumer import set_fetch_max_wait
from streams.dead_letters import DeadLetters
from streams.detection.agents import detection_lane, judge_due
from streams.detection.pipeline import DetectionPipeline
from streams.detection.repository import CollectionConsents, DeviceClasses
from streams.detection.state_store import StateStore
from streams.devices.agents import apply_device_events
from streams.devices.repository import DeviceBatteries
from streams.fanout import Fanout, Handler
from streams.faults import Faults
from streams.records import DecodedOnce
from streams.settings import StreamsSettings
from streams.storage.agents import storage_lane
from streams.storage.service import StorageWriter

log = get_logger("streams.app")

STATE_TABLE = "detector-state"
PLAN_TABLE = "care-plans"


def _raw_topic(app: faust.App, name: str, partitions: int) -> Any:
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )


async def _acked(fut: Any) -> Any:
    """Wait for a Faust send's Kafka acknowledgement."""
    return await (await fut)


def create_app(settings: StreamsSettings | None = None) -> faust.App:
    s = settings or StreamsSettings()
    app = faust.App(
        s.streams_app_id,
        broker=[f"kafka://{server.strip()}" for server in s.kafka_bootstrap.split(",")],
        datadir=s.streams_data_dir,
        store=s.streams_table_store,
        web_enabled=False,
        topic_partitions=READINGS.partitions,
        topic_allow_declare=False,
        topic_disable_leader=True,
        table_standby_replicas=1,
        broker_session_timeout=s.session_timeout_s,
        broker_heartbeat_interval=s.heartbeat_interval_s,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=8192,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # A batch's detections and states are handed to the producer together and their acks
        # awaited together: let the producer gather them into few requests.
        producer_linger=s.producer_linger_ms / 1000,
        producer_max_batch_size=256 * 1024,
    )
    set_fetch_max_wait(app, s.consumer_fetch_max_wait_ms)
    readings = _raw_topic(app, READINGS.name, READINGS.partitions)
    rejected = _raw_topic(app, REJECTED.name, REJECTED.partitions)
    closers: list[Any] = []
    lanes: list[tuple[str, Handler, int]] = []
    faults = Faults(s.streams_fault_inject)
    inputs = Inputs(app)
    # Both lanes take the same records: decode each once (forgotten when acknowledged).
    decoded = DecodedOnce()
    metrics.PROGRESS.stall_after_s = s.streams_stall_after_s

    async def send_dead_letter(value: bytes) -> Any:
        return await _acked(rejected.send(value=value))

    dead_letters = DeadLetters(send_dead_letter)

    if "store" in s.roles:
        writer = StorageWriter(s.database_url.get_secret_value())
        closers.append(writer.close)
        lanes.append(
            (
                "store",
                _faulty("lane-store", faults, storage_lane(writer, dead_letters, decoded.decode)),
                s.storage_batch_max,
            )
        )
        _add_device_events(app, s, dead_letters, closers, inputs)

    if "detect" in s.roles:
        detect = _add_detection(app, s, dead_letters, closers, faults, inputs, decoded)
        lanes.append(("detect", _faulty("lane-detect", faults, detect), s.detection_batch_max))

    taken: dict[Any, int] = {}  # topic partition -> offset of the newest record taken

    def behind() -> int:
        """Records of our partitions in Kafka (as of the last fetch) not taken yet."""
        consumer = app.consumer
        if consumer is None:
            return 0
        assigned = consumer.assignment()
        total = 0
        for tp, offset in list(taken.items()):
            if tp not in assigned:
                del taken[tp]
                continue
            highwater = consumer.highwater(tp)
            if highwater is not None:
                total += max(0, highwater - offset - 1)
        return total

    async def process(stream: Any) -> Any:
        async def ack(event: Any) -> None:
            await stream.ack(event)
            decoded.forget(event.value)
            inputs.finished(event)

        fanout = Fanout(
            lanes,
            ack=ack,
            backlog=s.lane_backlog_records,
            behind=behind,
            gather_above=s.lane_gather_above_records,
            gather_s=s.lane_gather_max_s,
        )
        fanout.start()
        try:
            async for events in stream.noack_take(s.readings_batch_max, within=s.readings_batch_within_s):
                faults.check("agent-readings")
                for e in events:
                    tp = e.message.tp
                    if e.message.offset > taken.get(tp, -1):
                        taken[tp] = e.message.offset
                await fanout.submit(events)
                yield len(events)
        finally:
            await fanout.stop()

    @app.agent(readings, name="readings")
    async def process_readings(stream: Any) -> Any:
        async for count in supervision.agent(app, "readings", process(stream)):
            yield count

    async def report_up() -> None:
        faults.check("timer-report-up")
        assigned = app.consumer.assignment() if app.consumer is not None else set()
        up = bool(assigned)
        metrics.UP.set(1 if up else 0)
        owned = {tp.partition for tp in assigned if tp.topic == READINGS.name}
        for partition in range(READINGS.partitions):
            metrics.ASSIGNED.labels(partition=str(partition)).set(1 if partition in owned else 0)
        metrics.PROGRESS.up = up
        metrics.PROGRESS.waiting(inputs.waiting())

    app.timer(interval=1.0)(supervision.timer(app, "report-up", report_up))

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode types receivers narrower than it calls them
    async def close_resources(_sender: Any, *_args: Any, signal: Any, **_kw: Any) -> None:
        metrics.UP.set(0)
        metrics.PROGRESS.up = False
        for close in closers:
            await close()

    return app


def _faulty(point: str, faults: Faults, handle: Handler) -> Handler:
    """The handler, raising first where a fault is injected (outside the handler's barrier)."""
    if not faults.point:
        return handle

    async def run(events: Any) -> object:
        faults.check(point)
        return await handle(events)

    return run


class Inputs:
    """What the worker holds of its input topics and has not finished, for readiness.

    Per owned partition of the readings, care-plan and device-event topics: the consumer's
    high-water mark (as of its last fetch) minus the offset after the newest record finished
    (acknowledged by the fan-out, or applied by the care-plan or device-events agent); before
    any, the committed offset. So it
    counts records in Kafka not yet taken, records taken and waiting for a lane, and records
    being processed.
    """

    TOPICS = frozenset({READINGS.name, CARE_PLANS.name, DEVICE_EVENTS.name})

    def __init__(self, app: faust.App) -> None:
        self._app = app
        self._next: dict[Any, int] = {}

    def finished(self, event: Any) -> None:
        message = event.message
        if message.offset >= self._next.get(message.tp, 0):
            self._next[message.tp] = message.offset + 1
        metrics.PROGRESS.advanced()

    def waiting(self) -> int:
        consumer = self._app.consumer
        if consumer is None:
            return 0
        assigned = consumer.assignment()
        for tp in [tp for tp in self._next if tp not in assigned]:
            del self._next[tp]
        committed = getattr(consumer, "_committed_offset", {})
        per_topic = dict.fromkeys(sorted(self.TOPICS), 0)
        for tp in assigned:
            if tp.topic not in self.TOPICS:
                continue
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            done = max(self._next.get(tp, 0), committed.get(tp) or 0)
            per_topic[tp.topic] += max(0, highwater - done)
        for topic, lag in per_topic.items():
            metrics.CONSUMER_LAG.labels(topic=topic).set(lag)
        return sum(per_topic.values())


def _add_device_events(
    app: faust.App, s: StreamsSettings, dead_letters: DeadLetters, closers: list[Any], inputs: Inputs
) -> None:
    """The device-events agent (role "store": it writes to the database, like storage)."""
    device_events = _raw_topic(app, DEVICE_EVENTS.name, DEVICE_EVENTS.partitions)
    batteries = DeviceBatteries(s.database_url.get_secret_value())
    closers.append(batteries.close)

    async def device_event_outcomes(stream: Any) -> Any:
        async for event, outcome in apply_device_events(stream, batteries, dead_letters):
            inputs.finished(event)
            yield outcome

    @app.agent(device_events, name="device-events")
    async def apply_events(stream: Any) -> Any:
        async for outcome in supervision.agent(app, "device-events", device_event_outcomes(stream)):
            yield outcome


def _add_detection(
    app: faust.App,
    s: StreamsSettings,
    dead_letters: DeadLetters,
    closers: list[Any],
    faults: Faults,
    inputs: Inputs,
    decoded: DecodedOnce,
) -> Handler:
    """Tables, the care-plan agent and the timer; returns the detection lane's handler."""
    care_plans = _raw_topic(app, CARE_PLANS.name, CARE_PLANS.partitions)
    # bytes keys and values: Faust then uses the raw codec for the table and its changelog.
    table_options: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "partitions": READINGS.partitions}
    plan_table = app.Table(PLAN_TABLE, help="Care plan JSON per patient (from rpm.care-plans.v1)", **table_options)
    state_table = app.Table(STATE_TABLE, help="Detector state per patient, saved once per batch", **table_options)

    state_changelog = state_table.changelog_topic.get_topic_name()

    # Straight to the producer (one record per patient per batch: Faust's topic-level send adds
    # its sensors and attachment logic to each); returns the record's ack future.
    async def send_changelog(key: bytes, value: bytes, partition: int) -> Any:
        producer = await app.maybe_start_producer()
        return await producer.send(state_changelog, key, value, partition, None, None)

    async def send_plan_changelog(key: bytes, value: bytes | None, partition: int) -> Any:
        return await _acked(plan_table.changelog_topic.send(key=key, value=value, partition=partition))

    async def publish(key: bytes, value: bytes) -> Any:
        producer = await app.maybe_start_producer()
        return await producer.send(DETECTIONS.name, key, value, None, None, None)

    devices = DeviceClasses(s.database_url.get_secret_value(), ttl_s=s.device_class_ttl_s)
    closers.append(devices.close)
    collection = CollectionConsents(s.database_url.get_secret_value())
    closers.append(collection.close)
    plans = PlanBook(plan_table.data)
    pipeline = DetectionPipeline(
        states=StateStore(state_table.data, send_changelog),
        plans=plans,
        devices=devices,
        publish=publish,
        dead_letters=dead_letters,
        retries=s.detection_send_retries,
        collection=collection,
        decode=decoded.decode,
    )

    async def care_plan_outcomes(stream: Any) -> Any:
        async for event, outcome in apply_care_plans(stream, plan_table.data, send_plan_changelog, plans, dead_letters):
            faults.check("agent-care-plans")
            inputs.finished(event)
            yield outcome

    @app.agent(care_plans, name="care-plans")
    async def apply_plans(stream: Any) -> Any:
        async for outcome in supervision.agent(app, "care-plans", care_plan_outcomes(stream)):
            yield outcome

    async def detect_due() -> None:
        faults.check("timer-detect-due")
        await judge_due(app, pipeline, s.detection_due_guard_s)

    app.timer(interval=s.detection_due_interval_s)(supervision.timer(app, "detect-due", detect_due))

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types receivers narrower than it calls them
    async def forget_revoked(_sender: Any, revoked: Any, **_kw: Any) -> None:
        pipeline.forget_partitions(tp.partition for tp in revoked if tp.topic == READINGS.name)

    return detection_lane(pipeline, dead_letters)
