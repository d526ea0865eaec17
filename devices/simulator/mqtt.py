"""A small MQTT 5 client on asyncio, made to run thousands of device connections in one
process and one event loop.

Only what a device needs: CONNECT (credentials, last will, clean start), PUBLISH at QoS 0/1
with PUBACK reason codes, SUBSCRIBE to its commands topic, incoming PUBLISH (answered
with PUBACK when QoS 1), PINGREQ and DISCONNECT. Each connection is an
`asyncio.Protocol`; the owner (a device) receives events through `ConnectionListener`.
Packet layouts follow the OASIS MQTT 5.0 specification, §3.
"""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass
from typing import Final, Protocol

CONNECT: Final = 0x10
CONNACK: Final = 0x20
PUBLISH: Final = 0x30
PUBACK: Final = 0x40
SUBSCRIBE: Final = 0x82
SUBACK: Final = 0x90
PINGREQ: Final = 0xC0
PINGRESP: Final = 0xD0
DISCONNECT: Final = 0xE0

PROP_SESSION_EXPIRY: Final = 0x11
PROP_RECEIVE_MAXIMUM: Final = 0x21
PROP_MAXIMUM_PACKET_SIZE: Final = 0x27
PROP_REASON_STRING: Final = 0x1F

RC_SUCCESS: Final = 0x00
RC_DISCONNECT_WITH_WILL: Final = 0x04
RC_NO_MATCHING_SUBSCRIBERS: Final = 0x10
RC_BAD_CREDENTIALS: Final = 0x86
RC_NOT_AUTHORIZED: Final = 0x87
RC_PACKET_ID_IN_USE: Final = 0x91
RC_QUOTA_EXCEEDED: Final = 0x97

REASONS: Final[dict[int, str]] = {
    0x00: "success", 0x04: "disconnect with will message", 0x10: "no matching subscribers",
    0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
    0x83: "implementation specific error", 0x84: "unsupported protocol version",
    0x85: "client identifier not valid", 0x86: "bad user name or password",
    0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned",
    0x8B: "server shutting down", 0x8C: "bad authentication method", 0x8D: "keep alive timeout",
    0x8E: "session taken over", 0x90: "topic name invalid", 0x91: "packet identifier in use",
    0x95: "packet too large", 0x97: "quota exceeded", 0x99: "payload format invalid",
    0x9C: "use another server", 0x9D: "server moved", 0x9F: "connection rate exceeded",
}
# PUBACK reason codes worth retrying later; every other code >= 0x80 is final.
TRANSIENT_PUBACK_CODES: Final = frozenset({RC_PACKET_ID_IN_USE, RC_QUOTA_EXCEEDED, 0x89})

PINGREQ_PACKET: Final = bytes((PINGREQ, 0))
_U16: Final = struct.Struct(">H")


def reason_name(code: int) -> str:
    return f"0x{code:02X} {REASONS.get(code, 'unknown reason')}"


def is_failure(code: int) -> bool:
    """MQTT 5: a reason code >= 0x80 is a failure; below it (0x10 included) is success."""
    return code >= 0x80


class MqttProtocolError(Exception):
    """The peer sent bytes this client cannot make sense of."""


# --- encoding ---------------------------------------------------------------------------------
def varint(n: int) -> bytes:
    """MQTT variable byte integer (§1.5.5)."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(f"variable byte integer out of range: {n}")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def mqtt_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > 0xFFFF:
        raise ValueError("MQTT string longer than 65535 bytes")
    return _U16.pack(len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + varint(len(body)) + body


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def encode_connect(
    client_id: str,
    username: str | None,
    password: str | None,
    *,
    keepalive: int = 60,
    clean_start: bool = True,
    will: Will | None = None,
    session_expiry: int = 0,
) -> bytes:
    flags = 0x02 if clean_start else 0
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    props = b""
    if session_expiry:
        props += bytes((PROP_SESSION_EXPIRY,)) + struct.pack(">I", session_expiry)
    body = bytearray(mqtt_string("MQTT") + bytes((5, flags)) + _U16.pack(keepalive))
    body += varint(len(props)) + props
    body += mqtt_string(client_id)
    if will is not None:
        body += b"\x00" + mqtt_string(will.topic) + mqtt_string(will.payload)
    if username is not None:
        body += mqtt_string(username)
    if password is not None:
        body += mqtt_string(password)
    return _packet(CONNECT, bytes(body))


def encode_publish(
    topic: bytes, payload: bytes, packet_id: int = 0, *, qos: int = 1, retain: bool = False, dup: bool = False
) -> bytes:
    """PUBLISH; `topic` is already a length-prefixed MQTT string (see `mqtt_string`)."""
    first = PUBLISH | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    pid = _U16.pack(packet_id) if qos else b""
    length = len(topic) + len(pid) + 1 + len(payload)
    return b"".join((bytes((first,)), varint(length), topic, pid, b"\x00", payload))


def encode_puback(packet_id: int, reason: int = RC_SUCCESS) -> bytes:
    if reason == RC_SUCCESS:
        return bytes((PUBACK, 2)) + _U16.pack(packet_id)
    return bytes((PUBACK, 4)) + _U16.pack(packet_id) + bytes((reason, 0))


def encode_subscribe(packet_id: int, topic_filter: str, qos: int = 1) -> bytes:
    return _packet(SUBSCRIBE, _U16.pack(packet_id) + b"\x00" + mqtt_string(topic_filter) + bytes((qos,)))


def encode_disconnect(reason: int = RC_SUCCESS) -> bytes:
    return bytes((DISCONNECT, 2, reason, 0))


# --- decoding ---------------------------------------------------------------------------------
def decode_varint(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int] | None:
    """(value, next position), or None when the buffer ends before the integer does."""
    value, shift = 0, 0
    for i in range(4):
        if pos + i >= len(buf):
            return None
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + i + 1
        shift += 7
    raise MqttProtocolError("variable byte integer longer than 4 bytes")


def decode_properties(data: bytes, pos: int) -> tuple[dict[int, int | bytes], int]:
    """The properties we read (integers and strings); returns them and the next position."""
    decoded = decode_varint(data, pos)
    if decoded is None:
        raise MqttProtocolError("truncated properties")
    length, pos = decoded
    end = pos + length
    props: dict[int, int | bytes] = {}
    while pos < end:
        ident = data[pos]
        pos += 1
        if ident in (0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A):  # byte
            props[ident] = data[pos]
            pos += 1
        elif ident in (0x13, 0x21, 0x22, 0x23):  # two-byte integer
            props[ident] = _U16.unpack_from(data, pos)[0]
            pos += 2
        elif ident in (0x02, 0x11, 0x18, 0x27):  # four-byte integer
            props[ident] = struct.unpack_from(">I", data, pos)[0]
            pos += 4
        elif ident == 0x0B:  # subscription identifier: variable byte integer
            sub = decode_varint(data, pos)
            if sub is None:
                raise MqttProtocolError("truncated subscription identifier")
            props[ident], pos = sub
        elif ident == 0x26:  # user property: string pair
            for _ in range(2):
                size = _U16.unpack_from(data, pos)[0]
                pos += 2 + size
        elif ident in (0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F):  # string / binary
            size = _U16.unpack_from(data, pos)[0]
            props[ident] = bytes(data[pos + 2 : pos + 2 + size])
            pos += 2 + size
        else:
            raise MqttProtocolError(f"unknown property 0x{ident:02X}")
    return props, end


class ConnectionListener(Protocol):
    """What the owner of a connection is told."""

    def on_connack(self, reason: int, props: dict[int, int | bytes]) -> None: ...

    def on_puback(self, packet_id: int, reason: int) -> None: ...

    def on_suback(self, packet_id: int, reasons: bytes) -> None: ...

    def on_message(self, topic: str, payload: bytes) -> None: ...

    def on_server_disconnect(self, reason: int) -> None: ...

    def on_lost(self, exc: Exception | None) -> None: ...


class MqttConnection(asyncio.Protocol):
    """One TCP connection speaking MQTT 5 for one listener."""

    __slots__ = ("_buf", "_error", "last_rx", "listener", "transport")

    def __init__(self, listener: ConnectionListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._error: Exception | None = None
        self.last_rx = 0.0

    # asyncio callbacks ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.listener.on_lost(self._error or exc)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        self.last_rx = time.monotonic()  # the clock asyncio loops use
        pos = 0
        try:
            while len(buf) - pos >= 2:
                header = decode_varint(buf, pos + 1)
                if header is None:
                    break
                length, start = header
                end = start + length
                if end > len(buf):
                    break
                self._dispatch(buf[pos], bytes(buf[start:end]))
                pos = end
        except (MqttProtocolError, struct.error, IndexError) as exc:
            del buf[:]
            self._error = MqttProtocolError(str(exc) or type(exc).__name__)
            self.abort()
            return
        if pos:
            del buf[:pos]

    def _dispatch(self, first: int, body: bytes) -> None:
        kind = first & 0xF0
        if kind == PUBACK:
            reason = body[2] if len(body) > 2 else RC_SUCCESS
            self.listener.on_puback(_U16.unpack_from(body, 0)[0], reason)
        elif kind == PUBLISH:
            self._incoming_publish(first, body)
        elif kind == PINGRESP:
            pass
        elif kind == CONNACK:
            props = decode_properties(body, 2)[0] if len(body) > 2 else {}
            self.listener.on_connack(body[1], props)
        elif kind == SUBACK:
            _props, pos = decode_properties(body, 2)
            self.listener.on_suback(_U16.unpack_from(body, 0)[0], body[pos:])
        elif kind == DISCONNECT:
            self.listener.on_server_disconnect(body[0] if body else RC_SUCCESS)
        else:
            raise MqttProtocolError(f"unexpected packet type 0x{first:02X}")

    def _incoming_publish(self, first: int, body: bytes) -> None:
        qos = (first >> 1) & 0x03
        size = _U16.unpack_from(body, 0)[0]
        topic = body[2 : 2 + size].decode("utf-8", "replace")
        pos = 2 + size
        packet_id = 0
        if qos:
            packet_id = _U16.unpack_from(body, pos)[0]
            pos += 2
        _props, pos = decode_properties(body, pos)
        if qos == 1:
            self.write(encode_puback(packet_id))
        self.listener.on_message(topic, body[pos:])

    # sending -------------------------------------------------------------------------------
    def write(self, data: bytes) -> bool:
        """Queue bytes for the socket; False when the connection is already gone."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        transport.write(data)
        return True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
