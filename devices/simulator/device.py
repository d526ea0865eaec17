"""Devices on the wire: each `Link` is one device's own MQTT 5 connection (its credentials,
retained status `online`, last will `offline`, subscription to its commands topic) and
its send queue; the `Fleet` runs thousands of links on one asyncio loop.

A link publishes its queue in `seq` order at QoS 1 with a bounded in-flight window. An
entry leaves the queue only when its PUBACK carries a reason code < 0x80 (a code >= 0x80
marks it refused, which is final, except quota/packet-id codes which are retried). On a
lost connection every unacknowledged entry is sent again, in order, after reconnecting
with exponential backoff. "resend from seq N" on the commands topic republishes what
the outbox still holds from N on.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from dataclasses import dataclass, fields
from typing import Any, Final

import msgspec

from core.clients import mqtt5 as mqtt
from core.supervision import Supervisor
from core.wire import ResendFrom, commands_topic, status_topic, telemetry_topic
from devices.simulator.groundtruth import GroundTruth
from devices.simulator.outbox import Outbox

CONNECT_TIMEOUT_S: Final = 10.0
BACKOFF_MIN_S: Final = 0.25
BACKOFF_MAX_S: Final = 5.0
REFUSED_RETRY_S: Final = 60.0
MEMORY_CAP: Final = 2000  # queued entries held in memory per device; the rest wait on disk
_resend_decoder: Final = msgspec.json.Decoder(ResendFrom)


class Entry:
    """One queued message."""

    __slots__ = ("done", "n", "payload", "seq")

    def __init__(self, seq: int, payload: bytes, n: int) -> None:
        self.seq, self.payload, self.n, self.done = seq, payload, n, False


@dataclass(slots=True)
class Stats:
    """Counters of one worker (summed over workers by the live view)."""

    generated: int = 0  # messages created (stored before publishing)
    generated_readings: int = 0
    published: int = 0  # PUBLISH packets written, resends included
    acked: int = 0  # messages acknowledged with reason < 0x80
    acked_readings: int = 0
    failed: int = 0  # messages refused with reason >= 0x80
    queued: int = 0  # messages not yet acknowledged
    resent: int = 0  # messages republished after a lost connection or a resend command
    injected: int = 0  # duplicates and faults published on purpose
    connected: int = 0
    devices: int = 0
    connect_errors: int = 0
    refused_logins: int = 0
    lost_connections: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Link:
    """One device's connection and queue."""

    def __init__(self, fleet: Fleet, index: int, device_id: str, password: str) -> None:
        self.fleet, self.index, self.device_id, self.password = fleet, index, device_id, password
        self.telemetry = mqtt.mqtt_string(telemetry_topic(device_id))
        self.status = mqtt.mqtt_string(status_topic(device_id))
        self.commands = commands_topic(device_id)
        self.queue: deque[Entry] = deque()
        self.sent = 0  # entries at the head of the queue written on the current connection
        self.inflight: dict[int, Entry | tuple[str, Any]] = {}
        self.resend: deque[Entry] = deque()
        self.spilled = False  # pending entries exist on disk beyond those in memory
        self.pending = 0  # messages not yet acknowledged (in memory or only on disk)
        self.acked_upto = 0
        self.last_acked: Entry | None = None
        self.conn: mqtt.MqttConnection | None = None
        self.online = False
        self.wanted = False  # should be connected (False: offline scenario, dead, stopping)
        self.connecting = False
        self.refused: int | None = None  # CONNACK reason of the last refused login
        self.last_error: str | None = None
        self.window = fleet.window
        self.keepalive = fleet.keepalive
        self.last_tx = 0.0
        self._pid = 0
        self._connack: asyncio.Future[tuple[int, dict[int, int | bytes]]] | None = None
        self._backoff = BACKOFF_MIN_S

    # --- connection -------------------------------------------------------------------------
    def start(self) -> None:
        self.wanted = True
        if not self.connecting and self.conn is None:
            self.connecting = True
            self.fleet.spawn(self._connect_loop(), name=f"connect-{self.device_id}")

    async def _connect_loop(self) -> None:
        try:
            while self.wanted and self.conn is None:
                delay = await self._attempt()
                if delay is None:
                    return
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
        finally:
            self.connecting = False

    async def _attempt(self) -> float | None:
        """One connection attempt; None on success, else the delay before the next."""
        fleet = self.fleet
        loop = asyncio.get_running_loop()
        async with fleet.connect_slots:
            if not self.wanted:
                return None
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    _t, conn = await loop.create_connection(lambda: mqtt.MqttConnection(self), fleet.host, fleet.port)
                    self._connack = loop.create_future()
                    conn.write(
                        mqtt.encode_connect(
                            self.device_id,
                            self.device_id,
                            self.password,
                            keepalive=fleet.keepalive,
                            will=mqtt.Will(status_topic(self.device_id), b"offline"),
                        )
                    )
                    self.conn = conn
                    reason, props = await self._connack
            except (OSError, TimeoutError, ConnectionError) as exc:
                self._drop_connection()
                fleet.stats.connect_errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                fleet.note_connect_error(self.last_error)
                self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
                return self._backoff
        if mqtt.is_failure(reason):
            self._drop_connection()
            self.refused = reason
            fleet.note_refused(self, reason)
            return REFUSED_RETRY_S
        self.refused = None
        self._backoff = BACKOFF_MIN_S
        receive_max = props.get(mqtt.PROP_RECEIVE_MAXIMUM)
        self.window = min(fleet.window, receive_max if isinstance(receive_max, int) else 65535)
        # MQTT 5 §3.2.2.3.14: a Server Keep Alive in the CONNACK replaces the one we asked for.
        server_keepalive = props.get(mqtt.PROP_SERVER_KEEP_ALIVE)
        self.keepalive = server_keepalive if isinstance(server_keepalive, int) else fleet.keepalive
        self.online = True
        fleet.stats.connected += 1
        fleet.note_connected(self)
        self._write(mqtt.encode_subscribe(self._next_pid(), self.commands, qos=1))
        pid = self._next_pid()
        self.inflight[pid] = ("status", None)
        self._write(mqtt.encode_publish(self.status, b"online", pid, qos=1, retain=True))
        self.pump()
        return None

    def _drop_connection(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.listener = _Detached()
            conn.abort()

    def go_offline(self) -> None:
        """Lose connectivity abruptly (no DISCONNECT), as a device out of range does: the
        broker publishes the last will."""
        self.wanted = False
        if self.conn is not None:
            self.conn.abort()

    def shutdown(self) -> None:
        """Switch off: DISCONNECT with reason 0x04 so the broker publishes the will."""
        self.wanted = False
        if self.conn is not None:
            self.conn.write(mqtt.encode_disconnect(mqtt.RC_DISCONNECT_WITH_WILL))
            self.conn.close()

    # --- listener callbacks -----------------------------------------------------------------
    def on_connack(self, reason: int, props: dict[int, int | bytes]) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result((reason, props))

    def on_lost(self, exc: Exception | None) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(ConnectionError(str(exc) if exc else "connection closed"))
        was_online = self.online
        unacknowledged = sum(1 for item in self.inflight.values() if isinstance(item, Entry))
        self.conn = None
        self.online = False
        self.inflight.clear()
        self.sent = 0
        if was_online:
            self.fleet.stats.connected -= 1
            self.fleet.stats.lost_connections += 1
            self.fleet.stats.resent += unacknowledged  # they go out again after reconnecting
        if self.wanted and not self.connecting:
            self.connecting = True
            self.fleet.spawn(self._reconnect_later(), name=f"reconnect-{self.device_id}")

    async def _reconnect_later(self) -> None:
        try:
            await asyncio.sleep(random.uniform(0.1, 1.0))
        finally:
            self.connecting = False
        if self.wanted:
            self.start()

    def on_server_disconnect(self, reason: int) -> None:
        self.last_error = f"broker disconnected the device: {mqtt.reason_name(reason)}"

    def on_suback(self, packet_id: int, reasons: bytes) -> None:
        if reasons and mqtt.is_failure(reasons[0]):
            self.last_error = f"subscription to {self.commands} refused: {mqtt.reason_name(reasons[0])}"

    def on_message(self, topic: str, payload: bytes) -> None:
        if topic != self.commands:
            return
        try:
            command = _resend_decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.fleet.gt.record(
                "command_ignored", device_id=self.device_id, payload=payload[:200].decode("utf-8", "replace")
            )
            return
        self.fleet.resend_from(self, command.from_seq)

    def on_puback(self, packet_id: int, reason: int) -> None:
        item = self.inflight.pop(packet_id, None)
        if item is None:
            return
        fleet = self.fleet
        if isinstance(item, tuple):
            fleet.oob_answered(self, item, reason)
        elif item.done:
            pass  # a resend of an entry already acknowledged
        elif mqtt.is_failure(reason):
            if reason in mqtt.TRANSIENT_PUBACK_CODES:
                # Retry later, in order: reconnecting resends everything unacknowledged.
                self.go_offline()
                self.wanted = True
            else:
                item.done = True
                fleet.outbox.refuse(self.device_id, item.seq, reason)
                fleet.stats.failed += 1
                fleet.stats.queued -= 1
                self.pending -= 1
                fleet.gt.record("refused", device_id=self.device_id, seq=item.seq, reason=mqtt.reason_name(reason))
        else:
            item.done = True
            fleet.outbox.ack(self.device_id, item.seq)
            fleet.stats.acked += 1
            fleet.stats.acked_readings += item.n
            fleet.stats.queued -= 1
            self.pending -= 1
            self.last_acked = item
        queue = self.queue
        while queue and queue[0].done:
            self.acked_upto = queue.popleft().seq
            # `sent` counts a prefix of the queue; entries acknowledged on an earlier
            # connection may be popped before this connection's pump reached them.
            self.sent = max(0, self.sent - 1)
        if self.spilled and len(queue) < MEMORY_CAP // 2:
            self._refill()
        self.pump()

    # --- sending ----------------------------------------------------------------------------
    def enqueue(self, entry: Entry) -> None:
        self.fleet.stats.queued += 1
        self.pending += 1
        if self.spilled or len(self.queue) >= MEMORY_CAP:
            self.spilled = True  # already stored in the outbox; read back when there is room
        else:
            self.queue.append(entry)
        self.pump()

    def _refill(self) -> None:
        after = self.queue[-1].seq if self.queue else self.acked_upto
        rows = self.fleet.outbox.pending_after(self.device_id, after, MEMORY_CAP // 2)
        for seq, payload in rows:
            self.queue.append(Entry(seq, payload, payload.count(b'"metric":')))
        self.spilled = len(rows) == MEMORY_CAP // 2

    def pump(self) -> None:
        if not self.online or self.conn is None:
            return
        inflight, window = self.inflight, self.window
        while self.resend and len(inflight) < window:
            entry = self.resend.popleft()
            pid = self._next_pid()
            inflight[pid] = ("resend", entry.seq)
            self._write(mqtt.encode_publish(self.telemetry, entry.payload, pid))
            self.fleet.stats.resent += 1
        queue = self.queue
        while self.sent < len(queue) and len(inflight) < window:
            entry = queue[self.sent]
            self.sent += 1
            if entry.done:
                continue
            pid = self._next_pid()
            inflight[pid] = entry
            self._write(mqtt.encode_publish(self.telemetry, entry.payload, pid))
            self.fleet.stats.published += 1

    def publish_oob(self, topic: bytes, payload: bytes, tag: tuple[str, Any]) -> bool:
        """Publish outside the queue (duplicates, faults); False when not connected."""
        if not self.online:
            return False
        pid = self._next_pid()
        self.inflight[pid] = tag
        self._write(mqtt.encode_publish(topic, payload, pid))
        self.fleet.stats.injected += 1
        return True

    def ping_if_idle(self, now: float) -> None:
        conn = self.conn
        keepalive = self.keepalive
        if conn is None or not self.online or keepalive <= 0:
            return
        if now - conn.last_rx > keepalive * 1.5:
            conn.abort()  # the broker stopped answering: reconnect
        elif now - self.last_tx > keepalive / 2:
            self._write(mqtt.PINGREQ_PACKET)

    def _write(self, data: bytes) -> None:
        if self.conn is not None and self.conn.write(data):
            self.last_tx = self.fleet.now()

    def _next_pid(self) -> int:
        pid = self._pid % 65535 + 1
        while pid in self.inflight:
            pid = pid % 65535 + 1
        self._pid = pid
        return pid


class _Detached:
    """Listener of a connection its device has given up (late callbacks go nowhere)."""

    def on_connack(self, reason: int, props: dict[int, int | bytes]) -> None: ...
    def on_puback(self, packet_id: int, reason: int) -> None: ...
    def on_suback(self, packet_id: int, reasons: bytes) -> None: ...
    def on_message(self, topic: str, payload: bytes) -> None: ...
    def on_server_disconnect(self, reason: int) -> None: ...
    def on_lost(self, exc: Exception | None) -> None: ...


class Fleet:
    """All links of one worker: connection slots, keepalive, resend handling, shutdown."""

    def __init__(
        self,
        host: str,
        port: int,
        outbox: Outbox,
        gt: GroundTruth,
        *,
        window: int = 32,
        keepalive: int = 60,
        connect_concurrency: int = 200,
    ) -> None:
        self.host, self.port, self.outbox, self.gt = host, port, outbox, gt
        self.window, self.keepalive = window, keepalive
        self.connect_slots = asyncio.Semaphore(connect_concurrency)
        self.stats = Stats()
        self.links: list[Link] = []
        self.refused: dict[str, int] = {}
        self.last_connect_error: str | None = None
        self.ever_connected = asyncio.Event()
        self.failure: str | None = None
        self.failed = asyncio.Event()
        self._supervisor = Supervisor("simulator", on_death=self._task_died)
        self._loop = asyncio.get_running_loop()

    def now(self) -> float:
        return self._loop.time()

    def spawn(self, coro: Any, *, name: str = "device-link", job: bool = True) -> None:
        """A supervised task: its failure (or, for a service, its end) stops the run."""
        self._supervisor.spawn(coro, name=name, job=job)

    def _task_died(self, what: str) -> None:
        if self.failure is None:
            self.failure = what
        self.failed.set()

    def add(self, index: int, device_id: str, password: str) -> Link:
        link = Link(self, index, device_id, password)
        self.links.append(link)
        self.stats.devices += 1
        return link

    # --- notes from links --------------------------------------------------------------------
    def note_connected(self, link: Link) -> None:
        self.refused.pop(link.device_id, None)
        self.ever_connected.set()

    def note_refused(self, link: Link, reason: int) -> None:
        self.stats.refused_logins += 1
        self.refused[link.device_id] = reason

    def note_connect_error(self, error: str) -> None:
        self.last_connect_error = error

    def resend_from(self, link: Link, from_seq: int) -> None:
        """Answer "resend from seq N": republish held messages already acknowledged (those
        still pending go out anyway, in order)."""
        head = link.queue[0].seq if link.queue else link.acked_upto + 1
        rows = [r for r in self.outbox.history_from(link.device_id, from_seq, 5000) if r[0] < head]
        for seq, payload in rows:
            link.resend.append(Entry(seq, payload, 0))
        self.gt.record(
            "resend",
            device_id=link.device_id,
            from_seq=from_seq,
            count=len(rows),
            first=rows[0][0] if rows else None,
            last=rows[-1][0] if rows else None,
        )
        link.pump()

    def oob_answered(self, link: Link, tag: tuple[str, Any], reason: int) -> None:
        kind, detail = tag
        if kind in ("fault", "duplicate"):
            self.gt.record(
                f"{kind}_answer",
                device_id=link.device_id,
                detail=detail,
                puback=reason,
                refused=mqtt.is_failure(reason),
                reason=mqtt.reason_name(reason),
            )

    # --- periodic and final ------------------------------------------------------------------
    async def keepalive_loop(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            now = self.now()
            for link in self.links:
                link.ping_if_idle(now)

    def acked_upto(self) -> dict[str, int]:
        return {link.device_id: link.acked_upto for link in self.links if link.acked_upto}

    async def drain(self, seconds: float) -> None:
        """Wait (bounded) until every queued message is acknowledged or its device offline."""
        for _ in range(max(1, int(seconds / 0.02))):
            if not any(link.online and (link.inflight or link.sent < len(link.queue)) for link in self.links):
                return
            await asyncio.sleep(0.02)

    async def shutdown(self) -> None:
        for link in self.links:
            link.shutdown()
        await self._supervisor.stop()
        await asyncio.sleep(0.05)  # let the transports write their DISCONNECT and close
