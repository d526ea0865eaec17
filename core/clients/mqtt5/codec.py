"""The MQTT 5 packet codec: encoding and decoding of the packets the platform uses, shared by
the device simulator, the ingest bridge and the benchmarks (connections: `connection`).

Packet layouts follow the OASIS MQTT 5.0 specification, §2-3. Only what the platform
uses: CONNECT (credentials, last will, clean start, session expiry, receive maximum),
PUBLISH at QoS 0/1 both ways, PUBACK with reason codes, SUBSCRIBE/SUBACK (shared
subscriptions included), UNSUBSCRIBE/UNSUBACK (subscriber connections), PINGREQ/PINGRESP
and DISCONNECT (optionally ending the session). QoS 2, AUTH and topic aliases
are not negotiated: a peer sending them is a protocol error.

`ServerLimits` holds what a broker's CONNACK asks (Server Keep Alive, Receive Maximum,
Maximum Packet Size); `publish_size` says what a PUBLISH will weigh.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

CONNECT: Final = 0x10
CONNACK: Final = 0x20
PUBLISH: Final = 0x30
PUBACK: Final = 0x40
SUBSCRIBE: Final = 0x82
SUBACK: Final = 0x90
UNSUBSCRIBE: Final = 0xA2
UNSUBACK: Final = 0xB0
PINGREQ: Final = 0xC0
PINGRESP: Final = 0xD0
DISCONNECT: Final = 0xE0

PROP_PAYLOAD_FORMAT: Final = 0x01
PROP_MESSAGE_EXPIRY: Final = 0x02
PROP_SUBSCRIPTION_ID: Final = 0x0B
PROP_SESSION_EXPIRY: Final = 0x11
PROP_ASSIGNED_CLIENT_ID: Final = 0x12
PROP_SERVER_KEEP_ALIVE: Final = 0x13
PROP_REASON_STRING: Final = 0x1F
PROP_RECEIVE_MAXIMUM: Final = 0x21
PROP_MAXIMUM_QOS: Final = 0x24
PROP_RETAIN_AVAILABLE: Final = 0x25
PROP_TOPIC_ALIAS_MAXIMUM: Final = 0x22
PROP_TOPIC_ALIAS: Final = 0x23
PROP_USER_PROPERTY: Final = 0x26
PROP_MAXIMUM_PACKET_SIZE: Final = 0x27

RC_SUCCESS: Final = 0x00
RC_DISCONNECT_WITH_WILL: Final = 0x04
RC_NO_MATCHING_SUBSCRIBERS: Final = 0x10
RC_UNSPECIFIED_ERROR: Final = 0x80
RC_BAD_CREDENTIALS: Final = 0x86
RC_NOT_AUTHORIZED: Final = 0x87
RC_PACKET_ID_IN_USE: Final = 0x91
RC_PACKET_TOO_LARGE: Final = 0x95
RC_QUOTA_EXCEEDED: Final = 0x97
RC_RETAIN_NOT_SUPPORTED: Final = 0x9A
RC_QOS_NOT_SUPPORTED: Final = 0x9B

REASONS: Final[dict[int, str]] = {
    0x00: "success",
    0x01: "granted QoS 1",
    0x02: "granted QoS 2",
    0x04: "disconnect with will message",
    0x10: "no matching subscribers",
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8B: "server shutting down",
    0x8C: "bad authentication method",
    0x8D: "keep alive timeout",
    0x8E: "session taken over",
    0x8F: "topic filter invalid",
    0x90: "topic name invalid",
    0x91: "packet identifier in use",
    0x95: "packet too large",
    0x97: "quota exceeded",
    0x99: "payload format invalid",
    0x9A: "retain not supported",
    0x9B: "QoS not supported",
    0x9C: "use another server",
    0x9D: "server moved",
    0x9E: "shared subscriptions not supported",
    0x9F: "connection rate exceeded",
}
# PUBACK reason codes worth retrying later; every other code >= 0x80 is final.
TRANSIENT_PUBACK_CODES: Final = frozenset({RC_PACKET_ID_IN_USE, RC_QUOTA_EXCEEDED, 0x89})

PINGREQ_PACKET: Final = bytes((PINGREQ, 0))
MAX_VARINT: Final = 268_435_455
MAX_PACKET_ID: Final = 0xFFFF
_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")

# Property identifiers by value type (§2.2.2.2).
_BYTE_PROPS: Final = frozenset({0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A})
_U16_PROPS: Final = frozenset({0x13, 0x21, 0x22, 0x23})
_U32_PROPS: Final = frozenset({0x02, 0x11, 0x18, 0x27})
_STRING_PROPS: Final = frozenset({0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F})


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
    if not 0 <= n <= MAX_VARINT:
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


def packet_size(remaining_length: int) -> int:
    """Bytes on the wire of a packet whose Remaining Length is `remaining_length`: the
    fixed header's first byte, the length itself, the rest (what Maximum Packet Size counts,
    §3.2.2.3.6)."""
    return 1 + len(varint(remaining_length)) + remaining_length


def publish_size(topic: bytes, payload: bytes, qos: int = 1) -> int:
    """Bytes on the wire of `encode_publish(topic, payload, ...)` (no properties)."""
    return packet_size(len(topic) + (2 if qos else 0) + 1 + len(payload))


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
    receive_maximum: int | None = None,
) -> bytes:
    """CONNECT (§3.1). `session_expiry` > 0 with `clean_start=False` resumes a persistent
    session; `receive_maximum` caps the unacknowledged QoS 1 messages the broker sends us."""
    if not 0 <= keepalive <= 0xFFFF:
        raise ValueError(f"keepalive out of range: {keepalive}")
    flags = 0x02 if clean_start else 0
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    props = b""
    if session_expiry:
        props += bytes((PROP_SESSION_EXPIRY,)) + _U32.pack(session_expiry)
    if receive_maximum is not None:
        if not 1 <= receive_maximum <= 0xFFFF:
            raise ValueError(f"receive maximum out of range: {receive_maximum}")
        props += bytes((PROP_RECEIVE_MAXIMUM,)) + _U16.pack(receive_maximum)
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


def encode_pubacks(packet_ids: Iterable[int]) -> bytes:
    """Success PUBACKs for many packet ids, as one write."""
    return b"".join([bytes((PUBACK, 2, pid >> 8, pid & 0xFF)) for pid in packet_ids])


def encode_subscribe(packet_id: int, topic_filter: str | Sequence[tuple[str, int]], qos: int = 1) -> bytes:
    """SUBSCRIBE to one filter at `qos`, or to several (filter, qos) pairs in one packet.

    Shared subscriptions are plain filters (`$share/{group}/{filter}`); No Local stays off
    (it is a protocol error on a shared subscription, §3.8.3.1)."""
    pairs = [(topic_filter, qos)] if isinstance(topic_filter, str) else list(topic_filter)
    if not pairs:
        raise ValueError("SUBSCRIBE needs at least one topic filter")
    body = bytearray(_U16.pack(packet_id) + b"\x00")
    for filter_, filter_qos in pairs:
        if filter_qos not in (0, 1):
            raise ValueError(f"unsupported subscription QoS {filter_qos}")
        body += mqtt_string(filter_) + bytes((filter_qos,))
    return _packet(SUBSCRIBE, bytes(body))


def encode_unsubscribe(packet_id: int, topic_filters: Sequence[str]) -> bytes:
    """UNSUBSCRIBE (§3.10): the broker stops routing these filters' messages to the session."""
    if not topic_filters:
        raise ValueError("UNSUBSCRIBE needs at least one topic filter")
    body = _U16.pack(packet_id) + b"\x00" + b"".join(mqtt_string(f) for f in topic_filters)
    return _packet(UNSUBSCRIBE, body)


def encode_disconnect(reason: int = RC_SUCCESS, *, session_expiry: int | None = None) -> bytes:
    """DISCONNECT (§3.14). `session_expiry=0` ends the session on the broker now (allowed
    whatever CONNECT said); None leaves the interval CONNECT set."""
    if session_expiry is None:
        return bytes((DISCONNECT, 2, reason, 0))
    props = bytes((PROP_SESSION_EXPIRY,)) + _U32.pack(session_expiry)
    return _packet(DISCONNECT, bytes((reason,)) + varint(len(props)) + props)


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
    """The properties at `pos` (integers and strings; user properties are skipped);
    returns them and the position after them."""
    decoded = decode_varint(data, pos)
    if decoded is None:
        raise MqttProtocolError("truncated properties")
    length, pos = decoded
    end = pos + length
    if end > len(data):
        raise MqttProtocolError("properties run past the end of the packet")
    props: dict[int, int | bytes] = {}
    try:
        while pos < end:
            ident = data[pos]
            pos += 1
            if ident in _BYTE_PROPS:
                props[ident] = data[pos]
                pos += 1
            elif ident in _U16_PROPS:
                props[ident] = _U16.unpack_from(data, pos)[0]
                pos += 2
            elif ident in _U32_PROPS:
                props[ident] = _U32.unpack_from(data, pos)[0]
                pos += 4
            elif ident == PROP_SUBSCRIPTION_ID:
                sub = decode_varint(data, pos)
                if sub is None:
                    raise MqttProtocolError("truncated subscription identifier")
                props[ident], pos = sub
            elif ident == PROP_USER_PROPERTY:  # a string pair
                for _ in range(2):
                    size = _U16.unpack_from(data, pos)[0]
                    pos += 2 + size
            elif ident in _STRING_PROPS:
                size = _U16.unpack_from(data, pos)[0]
                props[ident] = bytes(data[pos + 2 : pos + 2 + size])
                pos += 2 + size
            else:
                raise MqttProtocolError(f"unknown property 0x{ident:02X}")
    except (struct.error, IndexError):
        raise MqttProtocolError("a property runs past the end of the packet") from None
    if pos != end:
        raise MqttProtocolError("a property runs past the properties' length")
    return props, end


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What a broker's CONNACK asks of the client for the rest of the connection (§3.2.2.3):

    - `keepalive`: the Server Keep Alive, which the client MUST use instead of the Keep
      Alive it sent (§3.2.2.3.14, MQTT-3.2.2-21); None when the broker accepted ours;
    - `receive_maximum`: how many QoS 1 PUBLISH packets the client may have sent and not
      yet seen acknowledged (§3.2.2.3.3, MQTT-3.3.4-7); 65,535 when absent;
    - `maximum_packet_size`: the largest packet the client may send (§3.2.2.3.6,
      MQTT-3.2.2-15); None when absent (only the protocol's own limit applies);
    - `maximum_qos`: the highest QoS the client may publish at (§3.2.2.3.4, MQTT-3.2.2-11);
      2 when absent; a value other than 0 or 1 is a protocol error;
    - `retain_available`: whether the client may set RETAIN (§3.2.2.3.5, MQTT-3.2.2-14);
      True when absent.
    """

    keepalive: int | None = None
    receive_maximum: int = MAX_PACKET_ID
    maximum_packet_size: int | None = None
    maximum_qos: int = 2
    retain_available: bool = True

    @classmethod
    def from_connack(cls, props: dict[int, int | bytes]) -> ServerLimits:
        """The limits of a CONNACK's properties (as `decode_properties` returns them). A
        Receive Maximum or Maximum Packet Size of 0 is a protocol error (§3.2.2.3.3, 3.2.2.3.6)."""
        keepalive = props.get(PROP_SERVER_KEEP_ALIVE)
        receive_maximum = props.get(PROP_RECEIVE_MAXIMUM, MAX_PACKET_ID)
        maximum_packet_size = props.get(PROP_MAXIMUM_PACKET_SIZE)
        if not isinstance(receive_maximum, int) or receive_maximum == 0:
            raise MqttProtocolError("CONNACK with a Receive Maximum of 0")
        if maximum_packet_size is not None and (not isinstance(maximum_packet_size, int) or maximum_packet_size == 0):
            raise MqttProtocolError("CONNACK with a Maximum Packet Size of 0")
        maximum_qos = props.get(PROP_MAXIMUM_QOS, 2)
        if maximum_qos not in (0, 1, 2) or (PROP_MAXIMUM_QOS in props and maximum_qos == 2):
            raise MqttProtocolError(f"CONNACK with a Maximum QoS of {maximum_qos!r}")
        retain_available = props.get(PROP_RETAIN_AVAILABLE, 1)
        if retain_available not in (0, 1):
            raise MqttProtocolError(f"CONNACK with a Retain Available of {retain_available!r}")
        return cls(
            keepalive=keepalive if isinstance(keepalive, int) else None,
            receive_maximum=receive_maximum,
            maximum_packet_size=maximum_packet_size,
            maximum_qos=int(maximum_qos),
            retain_available=bool(retain_available),
        )

    def refuses(self, *, retain: bool) -> tuple[int, str] | None:
        """Why a QoS 1 publish (with `retain`) may not be sent to this broker, or None."""
        if self.maximum_qos < 1:
            return RC_QOS_NOT_SUPPORTED, "the broker's Maximum QoS is 0; readings need QoS 1"
        if retain and not self.retain_available:
            return RC_RETAIN_NOT_SUPPORTED, "the broker does not offer retained messages"
        return None

    def fits(self, size: int) -> bool:
        """Whether a packet of `size` bytes may be sent to this broker."""
        return self.maximum_packet_size is None or size <= self.maximum_packet_size


def decode_publish(first: int, body: bytes) -> tuple[str, int, int, bytes]:
    """(topic, qos, packet id, payload) of a PUBLISH packet's body (§3.3).

    A topic alias was never offered (Topic Alias Maximum defaults to 0), so an empty topic
    name or a Topic Alias property is a protocol error; so is QoS 2, which we never grant."""
    qos = (first >> 1) & 0x03
    if qos > 1:
        raise MqttProtocolError(f"PUBLISH with QoS {qos}, never granted")
    size = (body[0] << 8) | body[1]
    if not size:
        raise MqttProtocolError("PUBLISH without a topic name (topic aliases are not negotiated)")
    pos = 2 + size
    topic = body[2:pos].decode()
    packet_id = 0
    if qos:
        packet_id = (body[pos] << 8) | body[pos + 1]
        if not packet_id:
            raise MqttProtocolError("QoS 1 PUBLISH with packet identifier 0")
        pos += 2
    if body[pos] == 0:  # no properties: the usual case, skip the general parser
        pos += 1
    else:
        props, pos = decode_properties(body, pos)
        if PROP_TOPIC_ALIAS in props:
            raise MqttProtocolError("PUBLISH with a topic alias, which was not negotiated")
    return topic, qos, packet_id, body[pos:]
