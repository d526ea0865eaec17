"""MQTT 5 connections on asyncio, shared by the device simulator (thousands of device
connections on one loop) and the ingest bridge (one high-rate subscriber that acknowledges
each message only after Kafka confirmed it).

Two connection flavours:
- `MqttConnection` answers an incoming QoS 1 PUBLISH with PUBACK at once and hands each
  message to `ConnectionListener.on_message` (a device receiving its commands);
- `ManualAckConnection` hands every message read in one socket read to
  `ManualAckListener.on_publishes` as plain `Incoming` records and sends PUBACK only when
  asked (`ack`), at most once per packet id and only on the connection the message came
  in on (after a reconnect the broker redelivers it; acking an old packet id on the new
  connection could acknowledge another message).

Each connection keeps the limits its broker's CONNACK set (`ServerLimits`: Server Keep
Alive, Receive Maximum, Maximum Packet Size) in `limits`; honouring them is the owner's
job (`session.MqttSession` does; `publish_size` says what a PUBLISH will weigh).
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Iterable
from typing import Final, Protocol

from core.clients.mqtt5.codec import (
    CONNACK,
    DISCONNECT,
    PINGRESP,
    PUBACK,
    PUBLISH,
    RC_SUCCESS,
    SUBACK,
    UNSUBACK,
    MqttProtocolError,
    ServerLimits,
    decode_properties,
    decode_publish,
    decode_varint,
    encode_puback,
    encode_pubacks,
    is_failure,
)

_U16: Final = struct.Struct(">H")


class Incoming:
    """One PUBLISH received on a `ManualAckConnection`: a plain record, no property objects.

    `received` is the loop clock at the socket read that completed it (for ack latency);
    `connection` is what acknowledges it (see `ManualAckConnection.ack`)."""

    __slots__ = ("connection", "dup", "packet_id", "payload", "qos", "received", "retain", "topic")

    def __init__(
        self,
        topic: str,
        payload: bytes,
        packet_id: int,
        qos: int,
        dup: bool,
        retain: bool,
        received: float,
        connection: ManualAckConnection | None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.packet_id = packet_id
        self.qos = qos
        self.dup = dup
        self.retain = retain
        self.received = received
        self.connection = connection

    def __repr__(self) -> str:
        return f"Incoming(topic={self.topic!r}, packet_id={self.packet_id}, qos={self.qos}, {len(self.payload)} bytes)"


class ConnectionListener(Protocol):
    """What the owner of a connection is told."""

    def on_connack(self, reason: int, props: dict[int, int | bytes]) -> None: ...

    def on_puback(self, packet_id: int, reason: int) -> None: ...

    def on_suback(self, packet_id: int, reasons: bytes) -> None: ...

    def on_message(self, topic: str, payload: bytes) -> None: ...

    def on_server_disconnect(self, reason: int) -> None: ...

    def on_lost(self, exc: Exception | None) -> None: ...


class ManualAckListener(ConnectionListener, Protocol):
    """The owner of a `ManualAckConnection`; `on_message` is not called on it."""

    def on_publishes(self, messages: list[Incoming]) -> None: ...

    def on_unsuback(self, packet_id: int, reasons: bytes) -> None: ...


class MqttConnection(asyncio.Protocol):
    """One TCP connection speaking MQTT 5 for one listener; incoming QoS 1 PUBLISH
    packets are acknowledged as soon as they are read."""

    __slots__ = ("_buf", "_error", "connack_flags", "last_rx", "last_tx", "limits", "listener", "transport")

    def __init__(self, listener: ConnectionListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._error: Exception | None = None
        self.last_rx = 0.0
        self.last_tx = 0.0
        self.connack_flags = 0  # bit 0: the broker resumed a session (§3.2.2.1.1)
        # What the broker's CONNACK asks of us; the protocol's defaults until it arrives.
        self.limits = ServerLimits()

    # asyncio callbacks ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.last_rx = self.last_tx = time.monotonic()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.listener.on_lost(self._error or exc)

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()  # the clock asyncio loops use
        if self._buf:
            self._buf += data
            data = bytes(self._buf)
            self._buf.clear()
        size = len(data)
        pos = 0
        try:
            while size - pos >= 2:
                length = data[pos + 1]
                if length < 0x80:
                    start = pos + 2
                else:
                    header = decode_varint(data, pos + 1)
                    if header is None:
                        break
                    length, start = header
                end = start + length
                if end > size:
                    break
                self._dispatch(data[pos], data[start:end])
                pos = end
        except (MqttProtocolError, struct.error, IndexError, UnicodeDecodeError) as exc:
            self._error = MqttProtocolError(str(exc) or type(exc).__name__)
            self._read_failed()
            self.abort()
            return
        if pos < size:
            self._buf += data[pos:]
        self._after_read()

    def _after_read(self) -> None:
        """Hook run once the packets of a socket read were dispatched."""

    def _read_failed(self) -> None:
        """Hook run when the peer's bytes made no sense (the connection is aborted next)."""

    def _dispatch(self, first: int, body: bytes) -> None:
        kind = first & 0xF0
        if kind == PUBLISH:
            self._incoming_publish(first, body)
        elif kind == PUBACK:
            reason = body[2] if len(body) > 2 else RC_SUCCESS
            self.listener.on_puback(_U16.unpack_from(body, 0)[0], reason)
        elif kind == PINGRESP:
            pass
        elif kind == CONNACK:
            self.connack_flags = body[0]
            props = decode_properties(body, 2)[0] if len(body) > 2 else {}
            if not is_failure(body[1]):
                self.limits = ServerLimits.from_connack(props)
            self.listener.on_connack(body[1], props)
        elif kind == SUBACK:
            _props, pos = decode_properties(body, 2)
            self.listener.on_suback(_U16.unpack_from(body, 0)[0], body[pos:])
        elif kind == DISCONNECT:
            self.listener.on_server_disconnect(body[0] if body else RC_SUCCESS)
        else:
            raise MqttProtocolError(f"unexpected packet type 0x{first:02X}")

    def _incoming_publish(self, first: int, body: bytes) -> None:
        topic, qos, packet_id, payload = decode_publish(first, body)
        if qos == 1:
            self.write(encode_puback(packet_id))
        self.listener.on_message(topic, payload)

    # sending -------------------------------------------------------------------------------
    def write(self, data: bytes) -> bool:
        """Queue bytes for the socket; False when the connection is already gone."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        transport.write(data)
        self.last_tx = time.monotonic()
        return True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class ManualAckConnection(MqttConnection):
    """A subscriber connection whose owner acknowledges each QoS 1 message when it is done
    with it. Messages of one socket read reach the listener together, as one list."""

    __slots__ = ("_batch", "_manual", "unacked")

    def __init__(self, listener: ManualAckListener) -> None:
        super().__init__(listener)
        self._manual = listener
        self._batch: list[Incoming] = []
        # Packet ids received at QoS 1 and not acknowledged yet on this connection.
        self.unacked: set[int] = set()

    def _dispatch(self, first: int, body: bytes) -> None:
        if first & 0xF0 == UNSUBACK:
            _props, pos = decode_properties(body, 2)
            self._manual.on_unsuback(_U16.unpack_from(body, 0)[0], body[pos:])
        else:
            super()._dispatch(first, body)

    def _incoming_publish(self, first: int, body: bytes) -> None:
        topic, qos, packet_id, payload = decode_publish(first, body)
        if qos:
            self.unacked.add(packet_id)
        self._batch.append(
            Incoming(topic, payload, packet_id, qos, bool(first & 0x08), bool(first & 0x01), self.last_rx, self)
        )

    def _after_read(self) -> None:
        if self._batch:
            batch, self._batch = self._batch, []
            self._manual.on_publishes(batch)

    def _read_failed(self) -> None:
        # Nothing of a connection about to be aborted is handed on: the broker redelivers.
        self._batch = []
        self.unacked.clear()

    def ack(self, packet_ids: Iterable[int]) -> int:
        """PUBACK (success) each packet id still unacknowledged on this connection, in one
        write; ids already acknowledged, never received or of QoS 0 are skipped. Returns
        how many were acknowledged (0 when the connection is gone: the broker redelivers)."""
        if self.transport is None or self.transport.is_closing():
            return 0
        unacked = self.unacked
        due = []
        for pid in packet_ids:
            if pid in unacked:
                unacked.discard(pid)
                due.append(pid)
        if due:
            self.write(encode_pubacks(due))
        return len(due)
