"""The MQTT -> Kafka bridge.

MQTT v5, persistent session, shared subscription, manual acknowledgement: a message is
acknowledged to the broker only after Kafka confirmed every record it produced (the
forwarded readings, or its dead letter). The paho network loop runs in its own thread and
hands messages to the asyncio loop, which validates them in batches and produces to Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaProducer
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from psycopg import AsyncConnection

from core.logging import get_logger
from core.wire import (
    DEVICE_EVENTS,
    INGEST_SHARE_GROUP,
    READINGS,
    REJECTED,
    TOPIC_PREFIX,
    DeviceEvent,
    ReadingBatch,
    RejectedMessage,
    ResendFrom,
    commands_topic,
    device_id_from_topic,
    encode,
)
from ingest import metrics
from ingest.registry import RegistrySnapshot, load_snapshot
from ingest.settings import IngestSettings
from ingest.validation import Outcome, Reason, validate

log = get_logger("ingest.bridge")

DEAD_LETTER_PAYLOAD_CAP: Final = 4096
RESEND_COOLDOWN_S: Final = 30.0
BATTERY_STEP: Final = 0.05


@dataclass(slots=True)
class DeviceTrack:
    """What the bridge remembers of a device: recent seqs (dedup), last seq (gaps), battery."""

    recent: OrderedDict[int, None] = field(default_factory=OrderedDict)
    last_seq: int | None = None
    last_battery: float | None = None
    last_resend_request: float = 0.0

    def seen(self, seq: int) -> bool:
        return seq in self.recent

    def remember(self, seq: int, window: int = 4096) -> None:
        self.recent[seq] = None
        while len(self.recent) > window:
            self.recent.popitem(last=False)


class Bridge:
    """One bridge process; several share the load through the shared subscription."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self._inbox: list[mqtt.MQTTMessage] = []
        self._inbox_lock = threading.Lock()
        self._inbox_ready = asyncio.Event()
        self._wakeup_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._producer: AIOKafkaProducer | None = None
        self._client: mqtt.Client | None = None
        self._registry = RegistrySnapshot()
        self._db: AsyncConnection | None = None
        self._tracks: dict[str, DeviceTrack] = {}
        self._mqtt_connected = asyncio.Event()
        self._stopping = False

    # --- lifecycle ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
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
        await self._refresh_registry(force=True)
        self._client = self._make_client()
        self._client.connect_async(
            s.mqtt_host, s.mqtt_port, keepalive=30, clean_start=False, properties=self._connect_properties()
        )
        self._client.loop_start()
        tasks = [
            asyncio.create_task(self._process(), name="process"),
            asyncio.create_task(self._refresh_loop(), name="registry-refresh"),
        ]
        try:
            await asyncio.wait_for(self._mqtt_connected.wait(), timeout=30)
            metrics.UP.set(1)
            log.info("bridge up", mqtt=f"{s.mqtt_host}:{s.mqtt_port}", kafka=s.kafka_bootstrap)
            await stop.wait()
        finally:
            metrics.UP.set(0)
            self._stopping = True
            # Stop taking messages first; unacknowledged ones are redelivered by the
            # broker to the next session (persistent session, QoS 1).
            self._client.disconnect()
            self._client.loop_stop()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._producer.stop()
            if self._db is not None:
                await self._db.close()
            log.info("bridge stopped")

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.settings.mqtt_session_expiry_s
        props.ReceiveMaximum = self.settings.mqtt_receive_maximum
        return props

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.mqtt_client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.username_pw_set(s.mqtt_username, s.mqtt_password.get_secret_value())
        if s.mqtt_tls:
            client.tls_set(ca_certs=s.mqtt_ca_file)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    # --- paho thread callbacks ---------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, rc: ReasonCode, _p: Any) -> None:
        if rc.is_failure:
            log.error("mqtt connect refused", reason=str(rc))
            return
        share = f"$share/{INGEST_SHARE_GROUP}/{TOPIC_PREFIX}"
        client.subscribe([(f"{share}/+/telemetry", 1), (f"{share}/+/status", 1)])
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._mqtt_connected.set)
        log.info("mqtt connected", session_present=bool(getattr(flags, "session_present", False)))

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        metrics.UP.set(0)
        if self._loop is not None and not self._stopping:
            self._loop.call_soon_threadsafe(self._mqtt_connected.clear)
            log.warning("mqtt disconnected", reason=str(rc))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        assert self._loop is not None
        msg.timestamp = time.monotonic()
        # Wake the asyncio loop once per burst, not once per message: the self-pipe write
        # behind call_soon_threadsafe was the bridge's largest single cost.
        with self._inbox_lock:
            self._inbox.append(msg)
            if self._wakeup_pending:
                return
            self._wakeup_pending = True
        self._loop.call_soon_threadsafe(self._inbox_ready.set)

    async def _next_batch(self) -> list[mqtt.MQTTMessage]:
        await self._inbox_ready.wait()
        with self._inbox_lock:
            batch = self._inbox[: self.settings.batch_max]
            del self._inbox[: self.settings.batch_max]
            if not self._inbox:
                self._wakeup_pending = False
                self._inbox_ready.clear()
        return batch

    # --- registry -------------------------------------------------------------------------
    async def _refresh_registry(self, force: bool = False) -> None:
        if not force:
            # A device provisioned a moment ago: reload, at most five times a second.
            await asyncio.sleep(max(0.0, self._registry.loaded_at + 0.2 - time.monotonic()))
        for attempt in range(1000000):
            try:
                if self._db is None or self._db.closed:
                    self._db = await AsyncConnection.connect(
                        self.settings.database_url.get_secret_value(), autocommit=True
                    )
                self._registry = await load_snapshot(self._db)
                return
            except Exception as exc:
                # Without a registry no message can be judged: hold them (unacknowledged)
                # until the database answers again.
                if self._db is not None:
                    await self._db.close()
                self._db = None
                if not force and self._registry.loaded_at:
                    log.warning("registry refresh failed; keeping the last snapshot", error=str(exc))
                    return
                log.warning("registry load failed; retrying", error=str(exc), attempt=attempt)
                await asyncio.sleep(min(5.0, 0.2 * (attempt + 1)))

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.registry_refresh_s)
            await self._refresh_registry(force=False)

    # --- processing ---------------------------------------------------------------------
    async def _process(self) -> None:
        while True:
            batch = await self._next_batch()
            if any(self._unknown_device(m.topic) for m in batch):
                await self._refresh_registry()
                if any(self._unknown_device(m.topic) for m in batch):
                    # Broker credentials are issued inside the provisioning transaction, so
                    # a device may speak a moment before its row is visible: look once more.
                    await asyncio.sleep(1.0)
                    await self._refresh_registry(force=True)
            await self._forward_batch(batch)

    def _unknown_device(self, topic: str) -> bool:
        parsed = device_id_from_topic(topic)
        return parsed is not None and not self._registry.device_known(parsed[0])

    async def _forward_batch(self, batch: list[mqtt.MQTTMessage]) -> None:
        received_at = datetime.now(UTC)
        pending_seqs: set[tuple[str, int]] = set()
        sends: list[tuple[str, bytes | None, bytes]] = []
        remember: list[tuple[str, int]] = []
        for msg in batch:
            metrics.RECEIVED.inc()
            sends.extend(self._records_for(msg, received_at, pending_seqs, remember))
        attempt = 0
        while True:
            try:
                futures: list[Awaitable[Any]] = []
                assert self._producer is not None
                for topic, key, value in sends:
                    futures.append(await self._producer.send(topic, value=value, key=key))
                await asyncio.gather(*futures)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Kafka unavailable: nothing is acknowledged to MQTT; retry the batch (a
                # record produced twice is absorbed downstream by idempotent writes).
                attempt += 1
                metrics.KAFKA_RETRIES.inc()
                log.warning("kafka produce failed; retrying batch", error=str(exc), attempt=attempt)
                await asyncio.sleep(min(5.0, 0.2 * attempt))
        for device_id, seq in remember:
            self._tracks.setdefault(device_id, DeviceTrack()).remember(seq)
        assert self._client is not None
        now = time.monotonic()
        for msg in batch:
            if msg.qos > 0:
                self._client.ack(msg.mid, msg.qos)
            metrics.ACK_LATENCY.observe(now - msg.timestamp)

    def _records_for(
        self,
        msg: mqtt.MQTTMessage,
        received_at: datetime,
        pending_seqs: set[tuple[str, int]],
        remember: list[tuple[str, int]],
    ) -> list[tuple[str, bytes | None, bytes]]:
        parsed = device_id_from_topic(msg.topic)
        if parsed is None:
            return [self._dead_letter(msg, None, received_at, "foreign_topic", "not a device topic")]
        device_id, kind = parsed
        if kind == "status":
            return self._status_event(device_id, bytes(msg.payload), received_at)
        if kind != "telemetry":
            return [self._dead_letter(msg, device_id, received_at, "foreign_topic", f"unexpected topic kind {kind}")]
        outcome = validate(device_id, bytes(msg.payload), received_at, self._registry)
        records: list[tuple[str, bytes | None, bytes]] = []
        if outcome.seq is not None:
            track = self._tracks.setdefault(device_id, DeviceTrack())
            key = (device_id, outcome.seq)
            if track.seen(outcome.seq) or key in pending_seqs:
                metrics.DUPLICATES.inc()
                return []
            pending_seqs.add(key)
            remember.append(key)
            records.extend(self._device_side_events(device_id, outcome, track, received_at))
        for reading_set in outcome.accepted.values():
            for readings, quarantined in ((reading_set.readings, False), (reading_set.quarantined, True)):
                if not readings:
                    continue
                value = encode(
                    ReadingBatch(
                        patient_id=reading_set.patient_id,
                        device_id=device_id,
                        seq=outcome.seq or 0,
                        received_at=received_at,
                        readings=readings,
                        quarantined=quarantined,
                    )
                )
                records.append((READINGS.name, reading_set.patient_id.encode(), value))
                metrics.FORWARDED.inc(len(readings))
                if quarantined:
                    metrics.QUARANTINED.inc(len(readings))
        for rejection in outcome.rejections:
            records.append(self._dead_letter(msg, device_id, received_at, rejection.reason, rejection.detail))
        return records

    def _dead_letter(
        self, msg: mqtt.MQTTMessage, device_id: str | None, received_at: datetime, reason: str, detail: str
    ) -> tuple[str, bytes | None, bytes]:
        metrics.REJECTED.labels(reason=str(reason)).inc()
        payload = msg.payload[:DEAD_LETTER_PAYLOAD_CAP].decode("utf-8", "replace")
        record = RejectedMessage(
            reason=str(reason),
            detail=detail,
            topic=msg.topic[:256],
            device_id=device_id,
            received_at=received_at,
            payload=payload,
            payload_size=len(msg.payload),
        )
        return (REJECTED.name, (device_id or "unknown").encode(), encode(record))

    def _patient_of(self, device_id: str) -> str | None:
        bindings = self._registry.bindings(device_id)
        return bindings[-1].patient_id if bindings else None

    def _event(self, event: DeviceEvent) -> tuple[str, bytes | None, bytes]:
        metrics.DEVICE_EVENTS.labels(kind=event.kind).inc()
        key = (event.patient_id or event.device_id).encode()
        return (DEVICE_EVENTS.name, key, encode(event))

    def _status_event(self, device_id: str, payload: bytes, at: datetime) -> list[tuple[str, bytes | None, bytes]]:
        state = payload.decode("utf-8", "replace").strip().strip('"').lower()
        if state not in ("online", "offline"):
            return []
        return [
            self._event(
                DeviceEvent(
                    kind="online" if state == "online" else "offline",
                    device_id=device_id,
                    at=at,
                    patient_id=self._patient_of(device_id),
                )
            )
        ]

    def _device_side_events(
        self, device_id: str, outcome: Outcome, track: DeviceTrack, at: datetime
    ) -> list[tuple[str, bytes | None, bytes]]:
        records = []
        patient_id = self._patient_of(device_id)
        seq = outcome.seq
        assert seq is not None
        if track.last_seq is not None and seq > track.last_seq + 1:
            records.append(
                self._event(
                    DeviceEvent(
                        kind="seq_gap",
                        device_id=device_id,
                        at=at,
                        patient_id=patient_id,
                        expected_seq=track.last_seq + 1,
                        got_seq=seq,
                    )
                )
            )
            self._request_resend(device_id, track.last_seq + 1, track)
        if track.last_seq is None or seq > track.last_seq:
            track.last_seq = seq
        battery = outcome.battery
        if battery is not None and (track.last_battery is None or abs(battery - track.last_battery) >= BATTERY_STEP):
            track.last_battery = battery
            records.append(
                self._event(
                    DeviceEvent(kind="battery", device_id=device_id, at=at, patient_id=patient_id, battery=battery)
                )
            )
        return records

    def _request_resend(self, device_id: str, from_seq: int, track: DeviceTrack) -> None:
        now = time.monotonic()
        if now - track.last_resend_request < RESEND_COOLDOWN_S or self._client is None:
            return
        track.last_resend_request = now
        self._client.publish(commands_topic(device_id), encode(ResendFrom(from_seq=from_seq)), qos=1)
        metrics.RESEND_REQUESTS.inc()


__all__ = ["Bridge", "Reason"]
