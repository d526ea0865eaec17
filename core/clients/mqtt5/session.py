"""A reconnecting MQTT 5 session on asyncio for a high-rate subscriber that acknowledges
messages itself: the ingest bridge.

One `MqttSession` keeps one connection at a time to the broker: CONNECT with
`clean_start=False`, a Session Expiry Interval and a Receive Maximum (so QoS 1 messages
not yet acknowledged when the process dies are redelivered to its next session), SUBSCRIBE
to its filters (shared subscriptions included), PINGREQ when the link is quiet, and a
reconnect with exponential backoff and jitter whenever the connection is lost or refused.

Incoming messages reach the owner in lists (`on_messages`), one per socket read, as
`connection.Incoming` records; the owner acknowledges them with `ack` when it is done.
A message is acknowledged at most once, and only on the connection it arrived on: after a
reconnect the broker redelivers what was not acknowledged.

`publish` sends QoS 1 messages of our own and resolves with the broker's PUBACK reason code;
unacknowledged ones are sent again (DUP) after a reconnect. The session honours what the
broker's CONNACK asks (`codec.ServerLimits`): it pings at the Server Keep Alive when
the broker sets one, never has more publishes awaiting PUBACK than the broker's Receive
Maximum (the rest wait, in order), and never sends a packet above its Maximum Packet Size.
It holds at most `SessionOptions.max_pending_publishes` publishes not yet acknowledged,
connected or not. A publish it will not send is refused at once, without reaching the broker,
by resolving its future with a failure reason code (callers already treat >= 0x80 as
refused): 0x97 "quota exceeded" when that many are already held, 0x95 "packet too large"
when it exceeds the broker's Maximum Packet Size (known from the last CONNACK; a publish
queued while disconnected is checked again before it is sent). Either is logged.

SUBACK and UNSUBACK are matched to their SUBSCRIBE and UNSUBSCRIBE by packet id; a refused
topic filter raises `SessionRefusedError` naming it. `close` sends DISCONNECT; the session
stays on the broker for its expiry interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final

from core.clients.mqtt5.codec import (
    MAX_PACKET_ID,
    MAX_VARINT,
    PINGREQ_PACKET,
    RC_PACKET_TOO_LARGE,
    RC_QUOTA_EXCEEDED,
    MqttProtocolError,
    ServerLimits,
    encode_connect,
    encode_disconnect,
    encode_publish,
    encode_subscribe,
    encode_unsubscribe,
    is_failure,
    mqtt_string,
    publish_size,
    reason_name,
)
from core.clients.mqtt5.connection import Incoming, ManualAckConnection
from core.clients.mqtt5.options import PendingPublish, SessionOptions, SessionRefusedError
from core.logging import get_logger

log = get_logger("core.mqtt5")

CONNACK_SESSION_PRESENT: Final = 0x01


class _Link:
    """The listener of one connection: futures of its handshake, its acknowledgements by
    packet id, its loss, and hand-off of its traffic to the session (a late callback of an
    old connection reaches only its own `_Link`, never the current one)."""

    __slots__ = ("connack", "lost", "server_reason", "session", "subacks", "unsubacks")

    def __init__(self, session: MqttSession, loop: asyncio.AbstractEventLoop) -> None:
        self.session = session
        self.connack: asyncio.Future[tuple[int, dict[int, int | bytes]]] = loop.create_future()
        self.subacks: dict[int, asyncio.Future[bytes]] = {}
        self.unsubacks: dict[int, asyncio.Future[bytes]] = {}
        self.lost: asyncio.Future[Exception | None] = loop.create_future()
        self.server_reason: int | None = None

    def on_connack(self, reason: int, props: dict[int, int | bytes]) -> None:
        if not self.connack.done():
            self.connack.set_result((reason, props))

    def on_suback(self, packet_id: int, reasons: bytes) -> None:
        _answer(self.subacks, "SUBACK", "SUBSCRIBE", packet_id, reasons)

    def on_unsuback(self, packet_id: int, reasons: bytes) -> None:
        _answer(self.unsubacks, "UNSUBACK", "UNSUBSCRIBE", packet_id, reasons)

    def on_puback(self, packet_id: int, reason: int) -> None:
        if self.session._link is self:
            self.session._on_puback(packet_id, reason)

    def on_publishes(self, messages: list[Incoming]) -> None:
        self.session._deliver(messages)

    def on_message(self, topic: str, payload: bytes) -> None:  # pragma: no cover - manual-ack connections
        raise AssertionError("a manual-ack connection hands messages over in lists")

    def on_server_disconnect(self, reason: int) -> None:
        self.server_reason = reason

    def on_lost(self, exc: Exception | None) -> None:
        error = ConnectionError(str(exc) if exc else "connection closed")
        waiters: list[asyncio.Future[Any]] = [self.connack, *self.subacks.values(), *self.unsubacks.values()]
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)
        if not self.lost.done():
            self.lost.set_result(exc)


def _answer(waiting: dict[int, asyncio.Future[bytes]], kind: str, request: str, packet_id: int, reasons: bytes) -> None:
    waiter = waiting.pop(packet_id, None)
    if waiter is None:
        # Raised inside the connection's read: it aborts the connection as a protocol error.
        raise MqttProtocolError(f"{kind} for packet id {packet_id}, which no {request} of ours awaits")
    if not waiter.done():
        waiter.set_result(reasons)


class MqttSession:
    """See the module docstring. Callbacks run on the event loop and must not block."""

    def __init__(
        self,
        options: SessionOptions,
        on_messages: Callable[[list[Incoming]], None],
        *,
        on_connected: Callable[[bool], None] | None = None,
        on_disconnected: Callable[[str], None] | None = None,
    ) -> None:
        self.options = options
        self._deliver = on_messages
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self.connection: ManualAckConnection | None = None
        self.connected = asyncio.Event()
        self.session_present = False
        self.last_error: str | None = None
        self.connects = 0
        self._link: _Link | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._paused = False
        self._subscriptions = list(options.subscriptions)
        self._pid = 0
        # What the current (else the last) broker's CONNACK asked of us.
        self._limits = ServerLimits()
        # Our own QoS 1 publishes awaiting PUBACK, in the order they were published.
        self._outgoing: dict[int, PendingPublish] = {}
        # Of those, the ones written on the current connection (at most Receive Maximum) and
        # the ones waiting for their turn, in order.
        self._inflight: set[int] = set()
        self._waiting: deque[int] = deque()
        # The connection publishes go out on: set once it is subscribed, None meanwhile.
        self._sending: ManualAckConnection | None = None
        # Packet ids of SUBSCRIBE/UNSUBSCRIBE awaiting their acknowledgement.
        self._control_pids: set[int] = set()

    # --- what the broker asked for ------------------------------------------------------------
    @property
    def limits(self) -> ServerLimits:
        """The limits of the current connection's CONNACK (of the last one while disconnected)."""
        return self._limits

    @property
    def keepalive(self) -> int:
        """The keep alive in force: the broker's Server Keep Alive if it sent one, else ours."""
        server = self._limits.keepalive
        return self.options.keepalive if server is None else server

    @property
    def pending_publishes(self) -> int:
        """Our publishes not yet acknowledged (in flight or waiting)."""
        return len(self._outgoing)

    @property
    def inflight_publishes(self) -> int:
        """Our publishes written on the current connection and not yet acknowledged."""
        return len(self._inflight)

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start connecting (and reconnecting) in the background."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"mqtt-{self.options.client_id}")

    async def close(self, grace_s: float = 5.0, *, end_session: bool = False) -> None:
        """DISCONNECT (normal) and stop reconnecting; pending publishes are cancelled. The
        broker keeps the session for its expiry interval, unless `end_session`: then it
        drops the session now, with whatever it still held for us."""
        self._closing = True
        conn, link = self.connection, self._link
        goodbye = encode_disconnect(session_expiry=0 if end_session else None)
        if conn is not None and link is not None and conn.write(goodbye):
            # Half-close and let the broker close the connection once it read DISCONNECT:
            # a CONNECT with the same client id right after would otherwise race it.
            transport = conn.transport
            if transport is not None and transport.can_write_eof():
                transport.write_eof()
            else:
                conn.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(link.lost), grace_s)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.connection is not None:
            self.connection.abort()
        for entry in self._outgoing.values():
            entry.waiter.cancel()
        self._outgoing.clear()
        self._inflight.clear()
        self._waiting.clear()
        self._sending = None

    async def _run(self) -> None:
        opts = self.options
        backoff = opts.backoff_min
        while not self._closing:
            try:
                conn, link = await self._connect()
            except (OSError, TimeoutError, MqttProtocolError) as exc:  # ConnectionError is an OSError
                self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                delay = backoff * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not cryptography
                log.warning("mqtt connect failed; retrying", error=self.last_error, retry_in_s=round(delay, 2))
                backoff = min(backoff * 2, opts.backoff_max)
                await asyncio.sleep(delay)
                continue
            backoff = opts.backoff_min
            if self._paused and conn.transport is not None:
                conn.transport.pause_reading()
            self.connects += 1
            self.last_error = None
            self.connected.set()
            log.info(
                "mqtt connected",
                client_id=opts.client_id,
                session_present=self.session_present,
                keepalive_s=self.keepalive,
                server_receive_maximum=self._limits.receive_maximum,
                server_maximum_packet_size=self._limits.maximum_packet_size,
            )
            if self._on_connected is not None:
                self._on_connected(self.session_present)
            lost_with = await self._watch(conn, link)
            self.connected.clear()
            self.connection = None
            self._lose_sending()
            why = reason_name(link.server_reason) if link.server_reason is not None else str(lost_with or "closed")
            if not self._closing:
                self.last_error = f"connection lost: {why}"
                log.warning("mqtt disconnected", reason=why)
            if self._on_disconnected is not None:
                self._on_disconnected(why)

    async def _connect(self) -> tuple[ManualAckConnection, _Link]:
        opts = self.options
        loop = asyncio.get_running_loop()
        link = _Link(self, loop)
        conn: ManualAckConnection | None = None
        try:
            async with asyncio.timeout(opts.connect_timeout):
                _transport, conn = await loop.create_connection(
                    lambda: ManualAckConnection(link), opts.host, opts.port, ssl=opts.ssl
                )
                conn.write(
                    encode_connect(
                        opts.client_id,
                        opts.username,
                        opts.password,
                        keepalive=opts.keepalive,
                        clean_start=opts.clean_start,
                        session_expiry=opts.session_expiry,
                        receive_maximum=opts.receive_maximum,
                    )
                )
                reason, _props = await link.connack
                if is_failure(reason):
                    raise SessionRefusedError("CONNECT", reason)
                self._limits = conn.limits
                self.session_present = bool(conn.connack_flags & CONNACK_SESSION_PRESENT)
                self.connection, self._link = conn, link
                if self._subscriptions:
                    await self._subscribe(conn, link, self._subscriptions)
        except BaseException:
            self.connection = None
            if conn is not None:
                conn.abort()
            raise
        # What we published and the broker did not acknowledge goes out again (§4.4), in
        # order, as far as the broker's Receive Maximum allows; the rest follows as PUBACKs
        # come back.
        self._sending = conn
        self._inflight.clear()
        self._waiting = deque(self._outgoing)
        self._pump()
        return conn, link

    async def _subscribe(self, conn: ManualAckConnection, link: _Link, subscriptions: list[tuple[str, int]]) -> None:
        reasons = await self._request(conn, "SUBSCRIBE", lambda pid: encode_subscribe(pid, subscriptions), link.subacks)
        if len(reasons) != len(subscriptions):
            raise MqttProtocolError(f"SUBACK with {len(reasons)} reason codes for {len(subscriptions)} topic filters")
        for (topic_filter, _qos), code in zip(subscriptions, reasons, strict=True):
            if is_failure(code):
                log.error("mqtt subscription refused", topic_filter=topic_filter, reason=reason_name(code))
                raise SessionRefusedError("SUBSCRIBE", code, f"topic filter {topic_filter!r}")

    async def _request(
        self,
        conn: ManualAckConnection,
        kind: str,
        encode: Callable[[int], bytes],
        waiting: dict[int, asyncio.Future[bytes]],
    ) -> bytes:
        """Send a SUBSCRIBE or UNSUBSCRIBE under a packet id of its own and return the reason
        codes of the acknowledgement carrying that id."""
        pid = self._next_pid()
        if pid is None:  # pragma: no cover - MAX_PENDING_PUBLISHES keeps two ids free
            raise SessionRefusedError(kind, RC_QUOTA_EXCEEDED, "no packet identifier free")
        packet = encode(pid)
        if not self._limits.fits(len(packet)):
            raise SessionRefusedError(
                kind,
                RC_PACKET_TOO_LARGE,
                f"{len(packet)} bytes, the broker's Maximum Packet Size is {self._limits.maximum_packet_size}",
            )
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        waiting[pid] = waiter
        self._control_pids.add(pid)
        try:
            conn.write(packet)
            return await waiter
        finally:
            waiting.pop(pid, None)
            self._control_pids.discard(pid)

    async def _watch(self, conn: ManualAckConnection, link: _Link) -> Exception | None:
        """Keep the connection alive until it is lost; returns why it was lost."""
        keepalive = self.keepalive  # the broker's Server Keep Alive if it set one (MQTT-3.2.2-21)
        quiet = max(0.5, keepalive / 2)
        while True:
            done, _pending = await asyncio.wait({link.lost}, timeout=quiet / 2)
            if done:
                return link.lost.result()
            now = time.monotonic()
            # While reading is paused the broker's answers wait in the socket: its silence
            # says nothing then (our PINGREQs keep the session alive on its side).
            if keepalive and not self._paused and now - conn.last_rx > keepalive * 1.5:
                log.warning("mqtt broker silent beyond 1.5 keepalive; reconnecting")
                conn.abort()
            elif keepalive and (now - conn.last_tx >= quiet or now - conn.last_rx >= quiet):
                conn.write(PINGREQ_PACKET)

    async def unsubscribe(self) -> None:
        """UNSUBSCRIBE from every filter and wait for the UNSUBACK: the broker routes no new
        message to this session (what it routed before still arrives). Not resubscribed
        after a reconnect. Raises ConnectionError when not connected or refused."""
        conn, link = self.connection, self._link
        filters = [f for f, _qos in self._subscriptions]
        self._subscriptions = []
        if not filters:
            return
        if conn is None or link is None or not self.connected.is_set():
            raise ConnectionError("not connected")
        reasons = await self._request(conn, "UNSUBSCRIBE", lambda pid: encode_unsubscribe(pid, filters), link.unsubacks)
        for topic_filter, code in zip(filters, reasons, strict=False):
            if is_failure(code):
                raise SessionRefusedError("UNSUBSCRIBE", code, f"topic filter {topic_filter!r}")

    # --- traffic ------------------------------------------------------------------------------
    def pause_reading(self) -> None:
        """Stop reading from the broker (the owner is behind): TCP flow control holds the
        broker back, whatever it makes of our Receive Maximum."""
        self._paused = True
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.pause_reading()

    def resume_reading(self) -> None:
        self._paused = False
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.resume_reading()

    @property
    def reading_paused(self) -> bool:
        return self._paused

    def ack(self, messages: Iterable[Incoming]) -> int:
        """PUBACK the messages that arrived on the current connection, each at most once;
        returns how many were acknowledged."""
        conn = self.connection
        if conn is None:
            return 0
        return conn.ack(m.packet_id for m in messages if m.connection is conn and m.qos)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> asyncio.Future[int]:
        """Publish at QoS 1; the future resolves with the PUBACK reason code (>= 0x80: refused).
        Sent now when connected and within the broker's Receive Maximum, else when there is
        room. Refused at once, never sent: 0x97 when `max_pending_publishes` are already held,
        0x95 when the packet exceeds the broker's Maximum Packet Size (see the module docstring),
        0x9B when the broker's Maximum QoS is 0, 0x9A for a retained publish to a broker
        without Retain Available."""
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        encoded = mqtt_string(topic)
        if len(encoded) + 3 + len(payload) > MAX_VARINT:  # packet id, empty properties
            self._refuse(waiter, RC_PACKET_TOO_LARGE, topic, "beyond what MQTT can carry")
            return waiter
        size = publish_size(encoded, payload)
        if not self._limits.fits(size):
            limit = self._limits.maximum_packet_size
            self._refuse(waiter, RC_PACKET_TOO_LARGE, topic, f"{size} bytes; the broker accepts at most {limit}")
            return waiter
        refused = self._limits.refuses(retain=retain)
        if refused is not None:
            self._refuse(waiter, refused[0], topic, refused[1])
            return waiter
        if len(self._outgoing) >= self.options.max_pending_publishes:
            self._refuse(waiter, RC_QUOTA_EXCEEDED, topic, f"{len(self._outgoing)} publishes already await PUBACK")
            return waiter
        pid = self._next_pid()
        if pid is None:  # pragma: no cover - the bound above keeps ids free
            self._refuse(waiter, RC_QUOTA_EXCEEDED, topic, "no packet identifier free")
            return waiter
        self._outgoing[pid] = PendingPublish(encoded, payload, retain, waiter)
        self._waiting.append(pid)
        self._pump()
        return waiter

    def _refuse(self, waiter: asyncio.Future[int], reason: int, topic: str, why: str) -> None:
        log.warning("mqtt publish refused before sending", topic=topic, reason=reason_name(reason), detail=why)
        waiter.set_result(reason)

    def _pump(self) -> None:
        """Write waiting publishes while the broker's Receive Maximum leaves room (MQTT-3.3.4-7)."""
        conn = self._sending
        if conn is None:
            return
        limits, inflight, waiting, outgoing = self._limits, self._inflight, self._waiting, self._outgoing
        while waiting and len(inflight) < limits.receive_maximum:
            pid = waiting.popleft()
            entry = outgoing.get(pid)
            if entry is None:
                continue
            if not limits.fits(publish_size(entry.topic, entry.payload)):
                # Queued while we did not know this broker's limit (MQTT-3.2.2-15).
                del outgoing[pid]
                topic = entry.topic[2:].decode()
                self._refuse(entry.waiter, RC_PACKET_TOO_LARGE, topic, f"above {limits.maximum_packet_size} bytes")
                continue
            refused = limits.refuses(retain=entry.retain)
            if refused is not None:  # queued before this broker's CONNACK said so (MQTT-3.2.2-11, -14)
                del outgoing[pid]
                self._refuse(entry.waiter, refused[0], entry.topic[2:].decode(), refused[1])
                continue
            conn.write(encode_publish(entry.topic, entry.payload, pid, retain=entry.retain, dup=entry.sent))
            entry.sent = True
            inflight.add(pid)

    def _lose_sending(self) -> None:
        self._sending = None
        self._inflight.clear()
        self._waiting.clear()

    def _on_puback(self, packet_id: int, reason: int) -> None:
        if packet_id not in self._inflight:
            return  # not a publish of ours on this connection
        self._inflight.discard(packet_id)
        entry = self._outgoing.pop(packet_id, None)
        if entry is not None and not entry.waiter.done():
            entry.waiter.set_result(reason)
        self._pump()

    def _next_pid(self) -> int | None:
        """The next packet id not held by a publish, SUBSCRIBE or UNSUBSCRIBE of ours; None
        when all 65,535 are (it never spins: at most one pass over the id space)."""
        pid = self._pid
        outgoing, control = self._outgoing, self._control_pids
        for _ in range(MAX_PACKET_ID):
            pid = pid % MAX_PACKET_ID + 1
            if pid not in outgoing and pid not in control:
                self._pid = pid
                return pid
        return None
