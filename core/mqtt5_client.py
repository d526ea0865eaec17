"""A reconnecting MQTT 5 session on asyncio for a high-rate subscriber that acknowledges
messages itself: the ingest bridge.

One `MqttSession` keeps one connection at a time to the broker: CONNECT with
`clean_start=False`, a Session Expiry Interval and a Receive Maximum (so QoS 1 messages
not yet acknowledged when the process dies are redelivered to its next session), SUBSCRIBE
to its filters (shared subscriptions included), PINGREQ when the link is quiet, and a
reconnect with exponential backoff and jitter whenever the connection is lost or refused.

Incoming messages reach the owner in lists (`on_messages`), one per socket read, as
`core.mqtt5.Incoming` records; the owner acknowledges them with `ack` when it is done.
A message is acknowledged at most once, and only on the connection it arrived on: after a
reconnect the broker redelivers what was not acknowledged. `publish` sends QoS 1 messages
of our own and resolves with the broker's PUBACK reason code; unacknowledged ones are sent
again (DUP) after a reconnect. `close` sends DISCONNECT; the session stays on the broker
for its expiry interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from core.logging import get_logger
from core.mqtt5 import (
    PINGREQ_PACKET,
    Incoming,
    ManualAckConnection,
    MqttProtocolError,
    encode_connect,
    encode_disconnect,
    encode_publish,
    encode_subscribe,
    encode_unsubscribe,
    is_failure,
    mqtt_string,
    reason_name,
)

log = get_logger("core.mqtt5")

CONNACK_SESSION_PRESENT: Final = 0x01


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """Where and how to connect; see the module docstring."""

    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    subscriptions: tuple[tuple[str, int], ...] = ()
    keepalive: int = 30
    session_expiry: int = 3600
    receive_maximum: int = 2000
    clean_start: bool = False
    ssl: ssl.SSLContext | None = None
    connect_timeout: float = 10.0
    backoff_min: float = 0.25
    backoff_max: float = 10.0


class SessionRefusedError(ConnectionError):
    """The broker answered CONNECT or SUBSCRIBE with a failure reason code."""

    def __init__(self, what: str, reason: int) -> None:
        super().__init__(f"{what} refused: {reason_name(reason)}")
        self.reason = reason


class _Link:
    """The listener of one connection: futures of its handshake, its loss, and hand-off of
    its traffic to the session (a late callback of an old connection reaches only its own
    `_Link`, never the current one)."""

    __slots__ = ("connack", "lost", "server_reason", "session", "suback", "unsuback")

    def __init__(self, session: MqttSession, loop: asyncio.AbstractEventLoop) -> None:
        self.session = session
        self.connack: asyncio.Future[tuple[int, dict[int, int | bytes]]] = loop.create_future()
        self.suback: asyncio.Future[bytes] | None = None
        self.unsuback: asyncio.Future[bytes] | None = None
        self.lost: asyncio.Future[Exception | None] = loop.create_future()
        self.server_reason: int | None = None

    def on_connack(self, reason: int, props: dict[int, int | bytes]) -> None:
        if not self.connack.done():
            self.connack.set_result((reason, props))

    def on_suback(self, packet_id: int, reasons: bytes) -> None:
        if self.suback is not None and not self.suback.done():
            self.suback.set_result(reasons)

    def on_unsuback(self, packet_id: int, reasons: bytes) -> None:
        if self.unsuback is not None and not self.unsuback.done():
            self.unsuback.set_result(reasons)

    def on_puback(self, packet_id: int, reason: int) -> None:
        self.session._on_puback(packet_id, reason)

    def on_publishes(self, messages: list[Incoming]) -> None:
        self.session._deliver(messages)

    def on_message(self, topic: str, payload: bytes) -> None:  # pragma: no cover - manual-ack connections
        raise AssertionError("a manual-ack connection hands messages over in lists")

    def on_server_disconnect(self, reason: int) -> None:
        self.server_reason = reason

    def on_lost(self, exc: Exception | None) -> None:
        error = ConnectionError(str(exc) if exc else "connection closed")
        for waiter in (self.connack, self.suback, self.unsuback):
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)
        if not self.lost.done():
            self.lost.set_result(exc)


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
        # Our own QoS 1 publishes awaiting PUBACK: packet id -> (topic, payload, retain, waiter).
        self._outgoing: dict[int, tuple[bytes, bytes, bool, asyncio.Future[int]]] = {}

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
        for *_rest, waiter in self._outgoing.values():
            waiter.cancel()
        self._outgoing.clear()

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
            log.info("mqtt connected", client_id=opts.client_id, session_present=self.session_present)
            if self._on_connected is not None:
                self._on_connected(self.session_present)
            lost_with = await self._watch(conn, link)
            self.connected.clear()
            self.connection = None
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
                self.session_present = bool(conn.connack_flags & CONNACK_SESSION_PRESENT)
                self.connection, self._link = conn, link
                if self._subscriptions:
                    link.suback = loop.create_future()
                    conn.write(encode_subscribe(self._next_pid(), self._subscriptions))
                    for code in await link.suback:
                        if is_failure(code):
                            raise SessionRefusedError("SUBSCRIBE", code)
        except BaseException:
            self.connection = None
            if conn is not None:
                conn.abort()
            raise
        # What we published and the broker did not acknowledge goes out again (§4.4).
        for pid, (topic, payload, retain, _waiter) in self._outgoing.items():
            conn.write(encode_publish(topic, payload, pid, retain=retain, dup=True))
        return conn, link

    async def _watch(self, conn: ManualAckConnection, link: _Link) -> Exception | None:
        """Keep the connection alive until it is lost; returns why it was lost."""
        keepalive = self.options.keepalive
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
        link.unsuback = asyncio.get_running_loop().create_future()
        conn.write(encode_unsubscribe(self._next_pid(), filters))
        for code in await link.unsuback:
            if is_failure(code):
                raise SessionRefusedError("UNSUBSCRIBE", code)

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
        Sent now when connected, else on the next connection."""
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        pid = self._next_pid()
        encoded = mqtt_string(topic)
        self._outgoing[pid] = (encoded, payload, retain, waiter)
        if self.connection is not None:
            self.connection.write(encode_publish(encoded, payload, pid, retain=retain))
        return waiter

    def _on_puback(self, packet_id: int, reason: int) -> None:
        entry = self._outgoing.pop(packet_id, None)
        if entry is not None and not entry[3].done():
            entry[3].set_result(reason)

    def _next_pid(self) -> int:
        pid = self._pid % 0xFFFF + 1
        while pid in self._outgoing:
            pid = pid % 0xFFFF + 1
        self._pid = pid
        return pid
