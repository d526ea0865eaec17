"""The MQTT -> Kafka bridge.

MQTT v5 on the platform's own asyncio client (`core.clients.mqtt5`, ADR 0007): persistent
session, shared subscription, manual acknowledgement. Everything runs on one asyncio loop:
the messages of each socket read join an inbox, are validated in batches, produced to
Kafka, and acknowledged to the broker only after Kafka confirmed every record made from
them (the forwarded readings, device events, dead letters). Batches are pipelined: the
next one is validated while Kafka confirms the previous ones. A message not acknowledged
when the process dies is redelivered by the broker to the next session; its readings are
then produced twice and absorbed downstream by idempotent writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from datetime import UTC, datetime
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from psycopg import AsyncConnection

from core.clients.mqtt5 import Incoming, MqttSession, is_failure, reason_name
from core.dead_letters import dead_letter
from core.logging import get_logger
from core.progress import Progress
from core.retry import DATABASE_DOWN, KAFKA_DOWN, until_done
from core.supervision import Supervisor, error_detail, failure, safe_text
from core.wire import (
    DEVICE_EVENTS,
    READINGS,
    REJECTED,
    DeviceEvent,
    ResendFrom,
    commands_topic,
    device_id_from_topic,
    encode,
)
from ingest import metrics
from ingest.carried import CarriedReadings
from ingest.producer import BatchProducer, Record
from ingest.registry import RegistrySnapshot, load_snapshot
from ingest.settings import IngestSettings
from ingest.tracking import DeviceTrack, SeqVerdict, device_status, judge_seq, observe
from ingest.validation import MessageOutcome, Reason, validate

log = get_logger("ingest.bridge")

RESEND_COOLDOWN_S: Final = 30.0
CONNECT_WAIT_S: Final = 30.0
SHUTDOWN_GRACE_S: Final = 5.0
LEAVE_GRACE_S: Final = 10.0  # within the stack runner's 20 s between SIGTERM and SIGKILL
LEAVE_QUIET_S: Final = 0.5
TOPIC_CACHE_LIMIT: Final = 200_000


class Bridge:
    """One bridge process; several share the load through the shared subscription."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self._inbox: list[Incoming] = []
        self._inbox_ready = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._batches: BatchProducer | None = None
        self._mqtt: MqttSession | None = None
        self._registry = RegistrySnapshot()
        self._db: AsyncConnection | None = None
        self._tracks: dict[str, DeviceTrack] = {}
        # (device, seq) -> digest of messages produced but not yet confirmed by Kafka: a copy
        # arriving meanwhile is a duplicate too.
        self._unconfirmed_seqs: dict[tuple[str, int], int] = {}
        self._confirming: set[asyncio.Task[None]] = set()
        self._unacked = 0  # messages taken from the broker and not yet acknowledged to it
        self._supervisor = Supervisor("ingest")
        self.progress = Progress("ingest", settings.ingest_stall_after_s)
        self._inject_fault = False
        self._topics: dict[str, tuple[str, str] | None] = {}
        self._forwarded = 0  # readings of the batch being built, counted once per batch
        self._batch_in_hand = False  # taken from the inbox and not yet handed to Kafka
        self._last_message_at = 0.0

    # --- lifecycle ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap,
            acks="all",
            enable_idempotence=s.kafka_idempotent_producer,
            linger_ms=5,
            max_batch_size=256 * 1024,
            compression_type=None,
            request_timeout_ms=30000,
        )
        await self._producer.start()
        self._batches = BatchProducer(self._producer)
        await self._refresh_registry(force=True)
        self._mqtt = MqttSession(
            s.session_options(), self._on_messages, on_connected=self._on_connected, on_disconnected=self._on_lost
        )
        self._mqtt.start()
        process = self._supervisor.spawn(self._process(), name="process")
        refresh = self._supervisor.spawn(self._refresh_loop(), name="registry-refresh")
        self._supervisor.spawn(self._session_alive(), name="mqtt-session")
        if s.environment != "production":
            # Fault injection for the supervision tests: SIGUSR2 makes the next batch raise
            # outside the per-message barrier, as a bug in the batch loop would.
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, self._arm_fault)
        try:
            try:
                async with asyncio.timeout(CONNECT_WAIT_S):
                    await self._mqtt.connected.wait()
            except TimeoutError:
                raise RuntimeError(f"MQTT not connected after {CONNECT_WAIT_S:g} s: {self._mqtt.last_error}") from None
            log.info("bridge up", mqtt=f"{s.mqtt_host}:{s.mqtt_port}", kafka=s.kafka_bootstrap)
            await stop.wait()
            self._set_up(False)
            if s.mqtt_leave_on_stop:
                await self._leave()
        finally:
            self._set_up(False)
            # An orderly stop from here: tasks ending is no longer a failure. Take no new
            # batch; let those Kafka is confirming be acknowledged (fewer redeliveries after
            # a restart), then leave the broker with DISCONNECT. What is still
            # unacknowledged is redelivered to the next session (QoS 1).
            self._supervisor.standing_down()
            process.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await process
            if self._confirming:
                await asyncio.wait(set(self._confirming), timeout=SHUTDOWN_GRACE_S)
            await self._mqtt.close()
            for task in (refresh, *self._confirming):
                task.cancel()
            for task in (refresh, *self._confirming):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._producer.stop()
            if self._db is not None:
                await self._db.close()
            log.info("bridge stopped")

    async def _session_alive(self) -> None:
        """Ends when the MQTT session's own task ends: reconnecting is its job, so its end is
        a failure the supervisor must see."""
        assert self._mqtt is not None
        task = self._mqtt._task
        assert task is not None
        await asyncio.shield(task)

    async def _leave(self) -> None:
        """Leave the shared subscription for good (scale-down): stop new messages coming to
        this session, forward and acknowledge what it already holds, then end the session.

        Mosquitto keeps routing a share of the group's messages to a member whose session
        persists while it is away, and drops what a session held when the session ends
        (ADR 0007). If the drain does not finish in time the session is kept, so a bridge
        started later with this client id picks it up."""
        assert self._mqtt is not None
        try:
            async with asyncio.timeout(5.0):
                await self._mqtt.unsubscribe()
        except (TimeoutError, ConnectionError) as exc:
            log.warning("could not leave the shared subscription; keeping the session", error=str(exc))
            return
        deadline = time.monotonic() + LEAVE_GRACE_S
        while time.monotonic() < deadline:
            drained = not (self._inbox or self._batch_in_hand or self._confirming)
            if drained and time.monotonic() - self._last_message_at >= LEAVE_QUIET_S and self._mqtt.connected.is_set():
                await self._mqtt.close(end_session=True)
                log.info("left the shared subscription; session ended")
                return
            await asyncio.sleep(0.05)
        log.warning("messages still in hand after the grace period; keeping the session for the next start")

    def _set_up(self, up: bool) -> None:
        metrics.UP.set(1 if up else 0)
        self.progress.up = up

    def _arm_fault(self) -> None:
        log.warning("fault injection armed (SIGUSR2): the next batch raises")
        self._inject_fault = True
        self._inbox_ready.set()

    def _on_connected(self, session_present: bool) -> None:
        self._set_up(True)

    def _on_lost(self, reason: str) -> None:
        self._set_up(False)

    def _on_messages(self, messages: list[Incoming]) -> None:
        self._last_message_at = time.monotonic()
        self._inbox += messages
        self._unacked += len(messages)
        self.progress.waiting(self._unacked)
        self._inbox_ready.set()
        # Mosquitto 2.0 may send more than our Receive Maximum once acknowledgements flow
        # (ADR 0007): stop reading while the inbox is full, so memory and ack latency stay
        # bounded when Kafka or the registry is slow.
        if len(self._inbox) >= self.settings.inbox_max and self._mqtt is not None and not self._mqtt.reading_paused:
            self._mqtt.pause_reading()

    async def _next_batch(self) -> list[Incoming]:
        await self._inbox_ready.wait()
        limit = self.settings.batch_max
        batch = self._inbox[:limit]
        del self._inbox[:limit]
        if not self._inbox:
            self._inbox_ready.clear()
        mqtt = self._mqtt
        if mqtt is not None and mqtt.reading_paused and len(self._inbox) <= self.settings.inbox_max // 2:
            mqtt.resume_reading()
        return batch

    # --- registry -------------------------------------------------------------------------
    async def _refresh_registry(self, force: bool = False) -> None:
        if not force:
            # A device provisioned a moment ago: reload, at most five times a second.
            await asyncio.sleep(max(0.0, self._registry.loaded_at + 0.2 - time.monotonic()))
            try:
                await self._load_registry()
                return
            except DATABASE_DOWN:
                if self._registry.loaded_at:
                    log.warning("registry refresh failed; keeping the last snapshot")
                    return
        # Without a registry no message can be judged: hold them (unacknowledged) until the
        # database answers again; readiness reports the stall.
        await until_done(DATABASE_DOWN)(self._load_registry)

    async def _load_registry(self) -> None:
        try:
            if self._db is None or self._db.closed:
                self._db = await AsyncConnection.connect(self.settings.database_url.get_secret_value(), autocommit=True)
            self._registry = await load_snapshot(self._db)
        except DATABASE_DOWN as exc:
            log.warning("registry load failed", error=str(exc)[:300])
            if self._db is not None:
                await self._db.close()
            self._db = None
            raise

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.registry_refresh_s)
            await self._refresh_registry(force=False)

    # --- processing ---------------------------------------------------------------------
    async def _process(self) -> None:
        while True:
            batch = await self._next_batch()
            if self._inject_fault:
                raise RuntimeError("injected fault (SIGUSR2)")
            self._batch_in_hand = True
            if any(self._unknown_device(m.topic) for m in batch):
                await self._refresh_registry()
                if any(self._unknown_device(m.topic) for m in batch):
                    # Broker credentials are issued inside the provisioning transaction, so
                    # a device may speak a moment before its row is visible: look once more.
                    await asyncio.sleep(1.0)
                    await self._refresh_registry(force=True)
            await self._forward_batch(batch)
            self._batch_in_hand = False

    def _parse_topic(self, topic: str) -> tuple[str, str] | None:
        """(device id, kind) of a device topic, None for any other; remembered per topic."""
        try:
            return self._topics[topic]
        except KeyError:
            if len(self._topics) > TOPIC_CACHE_LIMIT:
                self._topics.clear()
            parsed = self._topics[topic] = device_id_from_topic(topic)
            return parsed

    def _unknown_device(self, topic: str) -> bool:
        parsed = self._parse_topic(topic)
        return parsed is not None and not self._registry.device_known(parsed[0])

    async def _forward_batch(self, batch: list[Incoming]) -> None:
        received_at = datetime.now(UTC)
        metrics.RECEIVED.inc(len(batch))
        records: list[Record] = []
        remember: list[tuple[str, int]] = []
        carried = CarriedReadings()
        self._forwarded = 0
        for msg in batch:
            records += self._records_for(msg, received_at, remember, carried)
        assert self._batches is not None
        records += carried.records(received_at, self._batches.partitioner(READINGS.name))
        metrics.FORWARDED.inc(self._forwarded)
        futures = await self._produce(records)
        task = self._supervisor.spawn(self._confirm(batch, records, remember, futures), name="confirm", job=True)
        self._confirming.add(task)
        task.add_done_callback(self._confirming.discard)

    async def _produce(self, records: list[Record]) -> list[asyncio.Future[Any]]:
        """Hand the records to the producer (in order); their futures resolve when Kafka
        acknowledged them. Waits while the producer's buffer is full."""
        return await until_done(KAFKA_DOWN)(self._send, records)

    async def _send(self, records: list[Record]) -> list[asyncio.Future[Any]]:
        assert self._batches is not None
        try:
            return await self._batches.send(records)
        except KAFKA_DOWN as exc:
            self._kafka_trouble(exc)
            raise

    async def _confirm(
        self,
        batch: list[Incoming],
        records: list[Record],
        remember: list[tuple[str, int]],
        futures: list[asyncio.Future[Any]],
    ) -> None:
        """Wait for Kafka's acknowledgement of the batch's records, then acknowledge its
        messages to the broker. On a Kafka error nothing is acknowledged and the whole
        batch is produced again (a record produced twice is absorbed downstream)."""

        async def delivered() -> None:
            nonlocal futures
            results = await asyncio.gather(*futures, return_exceptions=True)
            error = next((r for r in results if isinstance(r, Exception)), None)
            if error is not None:
                self._kafka_trouble(error)
                futures = await self._produce(records)  # the next attempt waits for these
                raise error

        await until_done(KAFKA_DOWN)(delivered)
        for device_id, seq in remember:
            digest = self._unconfirmed_seqs.pop((device_id, seq), 0)
            self._tracks.setdefault(device_id, DeviceTrack()).remember(seq, digest)
        assert self._mqtt is not None
        self._mqtt.ack(batch)
        self._unacked -= len(batch)
        self.progress.waiting(self._unacked)
        self.progress.advanced()
        now = time.monotonic()
        observe = metrics.ACK_LATENCY.observe
        for msg in batch:
            observe(now - msg.received)

    def _kafka_trouble(self, exc: BaseException) -> None:
        metrics.KAFKA_RETRIES.inc()
        log.warning("kafka produce failed; retrying batch", error=str(exc)[:300] or type(exc).__name__)

    def _records_for(
        self, msg: Incoming, received_at: datetime, remember: list[tuple[str, int]], carried: CarriedReadings
    ) -> list[Record]:
        """The records one message becomes; its readings join `carried` (one record per
        patient, device and kind for the whole batch). A barrier: whatever judging it raises
        becomes a dead letter (`internal_error`) and the batch goes on without it."""
        try:
            return self._judge(msg, received_at, remember, carried)
        except Exception as exc:
            log.error("message could not be judged; dead-lettered", topic=safe_text(msg.topic[:256]), **failure(exc))
            return [self._dead_letter(msg, None, received_at, Reason.INTERNAL_ERROR, error_detail(exc))]

    def _judge(
        self, msg: Incoming, received_at: datetime, remember: list[tuple[str, int]], carried: CarriedReadings
    ) -> list[Record]:
        parsed = self._parse_topic(msg.topic)
        if parsed is None:
            return [self._dead_letter(msg, None, received_at, "foreign_topic", "not a device topic")]
        device_id, kind = parsed
        if kind == "status":
            return self._status_event(device_id, msg.payload, received_at)
        if kind != "telemetry":
            return [self._dead_letter(msg, device_id, received_at, "foreign_topic", f"unexpected topic kind {kind}")]
        outcome = validate(device_id, msg.payload, received_at, self._registry)
        records: list[Record] = []
        track = self._tracks.get(device_id)
        if track is None:
            track = self._tracks[device_id] = DeviceTrack()
        if outcome.seq is None:
            # Refused before its seq could be read: it explains one missing seq, so the gap
            # it leaves is not answered with a resend request for the same bad message.
            track.seqless_rejects += 1
        else:
            key = (device_id, outcome.seq)
            known = self._unconfirmed_seqs.get(key, track.digest_of(outcome.seq))
            verdict = judge_seq(track, outcome.seq, outcome.digest, known)
            if verdict is SeqVerdict.DUPLICATE:
                metrics.DUPLICATES.inc()
                return []
            if verdict is SeqVerdict.RESET:
                # Its readings are new; they are stored unless (patient, metric, ts) is already.
                records.append(self._seq_reset(device_id, track, outcome.seq, received_at))
            self._unconfirmed_seqs[key] = outcome.digest
            remember.append(key)
            records += self._device_side_events(device_id, outcome, track, received_at)
        for rejection in outcome.rejections:
            records.append(self._dead_letter(msg, device_id, received_at, rejection.reason, rejection.detail))
        # Last, once nothing of this message can raise any more: its readings join the batch's.
        for reading_set in outcome.accepted.values():
            for readings, quarantined in ((reading_set.readings, False), (reading_set.quarantined, True)):
                if not readings:
                    continue
                carried.add(reading_set.patient_id, device_id, quarantined, outcome.seq or 0, readings)
                self._forwarded += len(readings)
                if quarantined:
                    metrics.QUARANTINED.inc(len(readings))
        return records

    def _seq_reset(self, device_id: str, track: DeviceTrack, seq: int, at: datetime) -> Record:
        log.info("device restarted its seq counter", device_id=device_id, last_seq=track.last_seq, got_seq=seq)
        event = DeviceEvent(
            kind="seq_reset",
            device_id=device_id,
            at=at,
            patient_id=self._patient_of(device_id),
            expected_seq=None if track.last_seq is None else track.last_seq + 1,
            got_seq=seq,
        )
        track.reset()
        return self._event(event)

    def _dead_letter(
        self, msg: Incoming, device_id: str | None, received_at: datetime, reason: str, detail: str
    ) -> Record:
        metrics.REJECTED.labels(reason=str(reason)).inc()
        value = dead_letter(reason, detail, msg.payload, topic=msg.topic, device_id=device_id, received_at=received_at)
        return (REJECTED.name, (device_id or "unknown").encode(), value)

    def _patient_of(self, device_id: str) -> str | None:
        bindings = self._registry.bindings(device_id)
        return bindings[-1].patient_id if bindings else None

    def _event(self, event: DeviceEvent) -> Record:
        metrics.DEVICE_EVENTS.labels(kind=event.kind).inc()
        key = (event.patient_id or event.device_id).encode()
        return (DEVICE_EVENTS.name, key, encode(event))

    def _status_event(self, device_id: str, payload: bytes, at: datetime) -> list[Record]:
        state = device_status(payload)
        if state is None:
            return []
        return [
            self._event(DeviceEvent(kind=state, device_id=device_id, at=at, patient_id=self._patient_of(device_id)))
        ]

    def _device_side_events(
        self, device_id: str, outcome: MessageOutcome, track: DeviceTrack, at: datetime
    ) -> list[Record]:
        assert outcome.seq is not None
        side = observe(track, outcome.seq, outcome.battery)
        if side.gap_from is None and side.battery is None:
            return []
        patient_id = self._patient_of(device_id)
        records = []
        if side.gap_from is not None:
            event = DeviceEvent(
                kind="seq_gap",
                device_id=device_id,
                at=at,
                patient_id=patient_id,
                expected_seq=side.gap_from,
                got_seq=outcome.seq,
            )
            records.append(self._event(event))
            self._request_resend(device_id, side.gap_from, track)
        if side.battery is not None:
            event = DeviceEvent(kind="battery", device_id=device_id, at=at, patient_id=patient_id, battery=side.battery)
            records.append(self._event(event))
        return records

    def _request_resend(self, device_id: str, from_seq: int, track: DeviceTrack) -> None:
        now = time.monotonic()
        if now - track.last_resend_request < RESEND_COOLDOWN_S or self._mqtt is None:
            return
        track.last_resend_request = now
        answer = self._mqtt.publish(commands_topic(device_id), encode(ResendFrom(from_seq=from_seq)))
        answer.add_done_callback(lambda done: _log_refused_command(device_id, done))
        metrics.RESEND_REQUESTS.inc()


def _log_refused_command(device_id: str, answer: asyncio.Future[int]) -> None:
    if not answer.cancelled() and is_failure(code := answer.result()):
        log.warning("resend command refused by the broker", device_id=device_id, reason=reason_name(code))


__all__ = ["Bridge", "Reason"]
