"""The MQTT 5 codec and connections of `core.clients.mqtt5`, byte for byte against the OASIS
MQTT 5.0 layouts, without a broker (the real-broker behaviour is tested in
test_mqtt5_session.py and by the bridge tests)."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.clients import mqtt5
from core.clients.mqtt5 import Incoming


def _props(*items: bytes) -> bytes:
    block = b"".join(items)
    return mqtt5.varint(len(block)) + block


def _publish_body(topic: str, payload: bytes, packet_id: int | None, props: bytes = b"\x00") -> bytes:
    pid = b"" if packet_id is None else struct.pack(">H", packet_id)
    return mqtt5.mqtt_string(topic) + pid + props + payload


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + mqtt5.varint(len(body)) + body


# --- variable byte integers ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_151, b"\xff\xff\x7f"),
        (2_097_152, b"\x80\x80\x80\x01"),
        (268_435_455, b"\xff\xff\xff\x7f"),
    ],
)
def test_varint_boundaries_match_the_specification(value: int, encoded: bytes) -> None:
    # The table of §1.5.5.
    assert mqtt5.varint(value) == encoded
    assert mqtt5.decode_varint(b"\xaa" + encoded + b"\xbb", 1) == (value, 1 + len(encoded))


@given(st.integers(min_value=0, max_value=268_435_455), st.binary(max_size=8))
def test_varint_round_trip_with_trailing_bytes(n: int, tail: bytes) -> None:
    encoded = mqtt5.varint(n)
    assert mqtt5.decode_varint(encoded + tail, 0) == (n, len(encoded))
    # Cut anywhere inside the integer: "not yet", never a wrong value.
    for cut in range(len(encoded)):
        assert mqtt5.decode_varint(encoded[:cut], 0) is None


def test_varint_out_of_range_and_overlong() -> None:
    with pytest.raises(ValueError, match="out of range"):
        mqtt5.varint(268_435_456)
    with pytest.raises(ValueError, match="out of range"):
        mqtt5.varint(-1)
    with pytest.raises(mqtt5.MqttProtocolError, match="longer than 4 bytes"):
        mqtt5.decode_varint(b"\x80\x80\x80\x80\x01", 0)


# --- packets we send -------------------------------------------------------------------------
def test_connect_for_a_persistent_session() -> None:
    packet = mqtt5.encode_connect(
        "rpm-ingest-a", "rpm-ingest", "pw", keepalive=30, clean_start=False, session_expiry=3600, receive_maximum=2000
    )
    assert packet[0] == 0x10
    length, pos = mqtt5.decode_varint(packet, 1) or (0, 0)
    assert len(packet) - pos == length
    body = packet[pos:]
    assert body[:7] == b"\x00\x04MQTT\x05"
    flags = body[7]
    assert flags & 0x02 == 0  # clean start off: resume the session
    assert flags & 0xC0 == 0xC0  # user name and password present
    assert flags & 0x04 == 0  # no will
    assert struct.unpack_from(">H", body, 8)[0] == 30
    props, pos = mqtt5.decode_properties(body, 10)
    assert props == {mqtt5.PROP_SESSION_EXPIRY: 3600, mqtt5.PROP_RECEIVE_MAXIMUM: 2000}
    assert mqtt5.PROP_TOPIC_ALIAS_MAXIMUM not in props  # 0 by default: no topic aliases
    strings = []
    while pos < len(body):
        size = struct.unpack_from(">H", body, pos)[0]
        strings.append(body[pos + 2 : pos + 2 + size])
        pos += 2 + size
    assert strings == [b"rpm-ingest-a", b"rpm-ingest", b"pw"]


def test_connect_of_a_device_with_a_will_and_clean_start() -> None:
    packet = mqtt5.encode_connect("d1", "d1", "pw", will=mqtt5.Will("rpm/v1/devices/d1/status", b"offline"))
    body = packet[2:]
    assert body[7] == 0x02 | 0x04 | 0x08 | 0x20 | 0x80 | 0x40  # clean, will QoS 1 retained, credentials
    assert body[10] == 0  # no properties
    assert b"\x00\x18rpm/v1/devices/d1/status\x00\x07offline" in body
    with pytest.raises(ValueError, match="receive maximum"):
        mqtt5.encode_connect("d1", None, None, receive_maximum=0)


def test_subscribe_to_shared_subscriptions_in_one_packet() -> None:
    filters = (("$share/ingest/rpm/v1/devices/+/telemetry", 1), ("$share/ingest/rpm/v1/devices/+/status", 1))
    packet = mqtt5.encode_subscribe(9, filters)
    assert packet[0] == 0x82  # SUBSCRIBE has fixed flags 0b0010
    length, pos = mqtt5.decode_varint(packet, 1) or (0, 0)
    body = packet[pos : pos + length]
    assert struct.unpack_from(">H", body, 0)[0] == 9
    assert body[2] == 0  # no properties
    expected = b"".join(mqtt5.mqtt_string(f) + bytes((q,)) for f, q in filters)
    assert body[3:] == expected  # options byte: QoS 1, No Local off (required for $share)
    assert mqtt5.encode_subscribe(3, "a/b") == _packet(0x82, b"\x00\x03\x00" + mqtt5.mqtt_string("a/b") + b"\x01")
    with pytest.raises(ValueError, match="QoS"):
        mqtt5.encode_subscribe(1, [("a", 2)])


def test_pubacks_and_disconnect() -> None:
    assert mqtt5.encode_puback(0x1234) == b"\x40\x02\x12\x34"
    assert mqtt5.encode_puback(7, 0x87) == b"\x40\x04\x00\x07\x87\x00"
    assert mqtt5.encode_pubacks([1, 256, 65535]) == b"\x40\x02\x00\x01" + b"\x40\x02\x01\x00" + b"\x40\x02\xff\xff"
    assert mqtt5.encode_pubacks([]) == b""
    assert mqtt5.encode_disconnect() == b"\xe0\x02\x00\x00"
    # Session Expiry Interval 0 in DISCONNECT: the broker ends the session now (§3.14.2.2.2).
    assert mqtt5.encode_disconnect(session_expiry=0) == b"\xe0\x07\x00\x05\x11\x00\x00\x00\x00"


def test_unsubscribe_layout() -> None:
    packet = mqtt5.encode_unsubscribe(0x0102, ["$share/ingest/a/+", "b"])
    assert packet == _packet(0xA2, b"\x01\x02\x00" + mqtt5.mqtt_string("$share/ingest/a/+") + mqtt5.mqtt_string("b"))
    with pytest.raises(ValueError, match="at least one"):
        mqtt5.encode_unsubscribe(1, [])


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=65535), st.booleans(), st.booleans())
def test_publish_round_trip(payload: bytes, packet_id: int, retain: bool, dup: bool) -> None:
    topic = "rpm/v1/devices/d-1/commands"
    packet = mqtt5.encode_publish(mqtt5.mqtt_string(topic), payload, packet_id, retain=retain, dup=dup)
    length, pos = mqtt5.decode_varint(packet, 1) or (0, 0)
    assert len(packet) - pos == length
    assert packet[0] == 0x32 | (0x08 if dup else 0) | (0x01 if retain else 0)
    assert mqtt5.decode_publish(packet[0], packet[pos:]) == (topic, 1, packet_id, payload)


# --- properties and incoming PUBLISH ---------------------------------------------------------
def test_every_kind_of_property_is_parsed() -> None:
    block = _props(
        b"\x01\x01",  # payload format indicator (byte)
        b"\x02" + struct.pack(">I", 600),  # message expiry interval (four bytes)
        b"\x0b" + mqtt5.varint(300),  # subscription identifier (variable byte integer, 2 bytes)
        b"\x21" + struct.pack(">H", 20),  # receive maximum (two bytes)
        b"\x26" + mqtt5.mqtt_string("k") + mqtt5.mqtt_string("v"),  # user property (skipped)
        b"\x03" + mqtt5.mqtt_string("application/json"),  # content type (string)
        b"\x1f" + mqtt5.mqtt_string("why"),  # reason string
    )
    props, end = mqtt5.decode_properties(b"\xff" + block + b"rest", 1)
    assert props == {0x01: 1, 0x02: 600, 0x0B: 300, 0x21: 20, 0x03: b"application/json", 0x1F: b"why"}
    assert end == 1 + len(block)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (_props(b"\x7f\x00"), "unknown property"),
        (b"\x05\x02\x00\x00", "past the end"),  # declares 5 bytes, 3 follow
        (_props(b"\x02\x00\x14"), "runs past the end"),  # a four-byte integer cut short
        (_props(b"\x02\x00\x14") + b"\x00\x00payload", "properties' length"),  # ... reading into the payload
        (b"\x80", "truncated"),
    ],
)
def test_malformed_properties_are_protocol_errors(block: bytes, message: str) -> None:
    with pytest.raises(mqtt5.MqttProtocolError, match=message):
        mqtt5.decode_properties(block, 0)


def test_publish_with_properties_keeps_its_payload() -> None:
    props = _props(b"\x01\x01", b"\x0b\x05", b"\x26" + mqtt5.mqtt_string("a") + mqtt5.mqtt_string("b"))
    body = _publish_body("rpm/v1/devices/d/telemetry", b'{"x":1}', 42, props)
    assert mqtt5.decode_publish(0x32, body) == ("rpm/v1/devices/d/telemetry", 1, 42, b'{"x":1}')
    qos0 = _publish_body("t/0", b"p", None)
    assert mqtt5.decode_publish(0x30, qos0) == ("t/0", 0, 0, b"p")


@pytest.mark.parametrize(
    ("first", "body", "message"),
    [
        (0x32, _publish_body("t", b"p", 1, _props(b"\x23\x00\x01")), "topic alias"),
        (0x32, _publish_body("", b"p", 1), "without a topic name"),
        (0x34, _publish_body("t", b"p", 1), "QoS 2"),
        (0x32, _publish_body("t", b"p", 0), "packet identifier 0"),
    ],
)
def test_publish_the_client_never_negotiated_is_refused(first: int, body: bytes, message: str) -> None:
    with pytest.raises(mqtt5.MqttProtocolError, match=message):
        mqtt5.decode_publish(first, body)


# --- connections -----------------------------------------------------------------------------
class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False
        self.aborted = False

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True


class Listener:
    def __init__(self) -> None:
        self.batches: list[list[Incoming]] = []
        self.events: list[tuple[str, Any]] = []

    def on_connack(self, reason: int, props: dict[int, int | bytes]) -> None:
        self.events.append(("connack", (reason, props)))

    def on_puback(self, packet_id: int, reason: int) -> None:
        self.events.append(("puback", (packet_id, reason)))

    def on_suback(self, packet_id: int, reasons: bytes) -> None:
        self.events.append(("suback", (packet_id, reasons)))

    def on_message(self, topic: str, payload: bytes) -> None:
        self.events.append(("message", (topic, payload)))

    def on_publishes(self, messages: list[Incoming]) -> None:
        self.batches.append(messages)

    def on_unsuback(self, packet_id: int, reasons: bytes) -> None:
        self.events.append(("unsuback", (packet_id, reasons)))

    def on_server_disconnect(self, reason: int) -> None:
        self.events.append(("disconnect", reason))

    def on_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", exc))


def _manual() -> tuple[mqtt5.ManualAckConnection, Listener, FakeTransport]:
    listener = Listener()
    conn = mqtt5.ManualAckConnection(listener)
    transport = FakeTransport()
    conn.connection_made(transport)
    return conn, listener, transport


def _incoming_stream(count: int, size: int) -> bytes:
    return b"".join(
        mqtt5.encode_publish(mqtt5.mqtt_string(f"rpm/v1/devices/d{i}/telemetry"), bytes([i % 256]) * size, i + 1)
        for i in range(count)
    )


@given(
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=0, max_value=300),
    st.lists(st.integers(min_value=1, max_value=400), max_size=30),
)
def test_messages_split_across_reads_arrive_whole_and_in_order(count: int, size: int, cuts: list[int]) -> None:
    conn, listener, transport = _manual()
    stream = _incoming_stream(count, size)
    pos = 0
    for cut in [*cuts, len(stream)]:
        conn.data_received(stream[pos : pos + cut])
        pos += cut
    conn.data_received(stream[pos:])
    received = [m for batch in listener.batches for m in batch]
    assert [m.packet_id for m in received] == list(range(1, count + 1))
    assert all(m.topic == f"rpm/v1/devices/d{i}/telemetry" for i, m in enumerate(received))
    assert all(m.payload == bytes([i % 256]) * size and m.qos == 1 for i, m in enumerate(received))
    assert all(batch for batch in listener.batches)  # never an empty hand-off
    assert transport.written == []  # nothing acknowledged before the owner says so


def test_manual_ack_is_sent_once_per_packet_id() -> None:
    conn, listener, transport = _manual()
    qos0 = mqtt5.encode_publish(mqtt5.mqtt_string("rpm/v1/devices/d/status"), b"online", qos=0)
    conn.data_received(_incoming_stream(3, 10) + qos0)
    (batch,) = listener.batches
    assert [(m.packet_id, m.qos) for m in batch] == [(1, 1), (2, 1), (3, 1), (0, 0)]
    assert all(m.connection is conn and m.received == conn.last_rx for m in batch)
    assert conn.ack([3, 1, 3]) == 2  # the repeated id is acknowledged once
    assert transport.written == [b"\x40\x02\x00\x03\x40\x02\x00\x01"]
    assert conn.ack([1, 3, 99]) == 0  # already acknowledged, never received
    assert conn.ack([2]) == 1
    assert transport.written[-1] == b"\x40\x02\x00\x02"
    assert conn.unacked == set()
    conn.data_received(_incoming_stream(1, 1))  # the broker reuses a freed packet id
    assert conn.ack([1]) == 1
    transport.closing = True
    conn.data_received(_incoming_stream(2, 1))
    assert conn.ack([1, 2]) == 0  # a closing connection acknowledges nothing


def test_malformed_input_aborts_without_handing_anything_on() -> None:
    conn, listener, transport = _manual()
    bad = _packet(0x32, _publish_body("t", b"p", 5, _props(b"\x23\x00\x01")))  # topic alias
    conn.data_received(_incoming_stream(2, 4) + bad)
    assert transport.aborted
    assert listener.batches == []
    assert conn.ack([1, 2]) == 0
    conn.connection_lost(None)
    assert isinstance(listener.events[-1][1], mqtt5.MqttProtocolError)


def test_control_packets_reach_the_listener_and_connack_flags_are_kept() -> None:
    conn, listener, _transport = _manual()
    connack = bytes([0x20, 6, 0x01, 0, 3, 0x21, 0x00, 0x14])  # session present, Receive Maximum 20
    suback = bytes([0x90, 5, 0, 9, 0, 0x01, 0x87])  # granted QoS 1, then not authorized
    puback = bytes([0x40, 4, 0, 8, 0x10, 0])
    unsuback = bytes([0xB0, 5, 0, 10, 0, 0x00, 0x11])  # success, no subscription existed
    pingresp = bytes([0xD0, 0])
    conn.data_received(connack + suback + puback + pingresp + unsuback)
    assert conn.connack_flags & 0x01
    assert listener.events == [
        ("connack", (0, {mqtt5.PROP_RECEIVE_MAXIMUM: 20})),
        ("suback", (9, b"\x01\x87")),
        ("puback", (8, 0x10)),
        ("unsuback", (10, b"\x00\x11")),
    ]


def test_a_device_connection_refuses_what_it_never_asked_for() -> None:
    listener = Listener()
    conn = mqtt5.MqttConnection(listener)
    transport = FakeTransport()
    conn.connection_made(transport)
    conn.data_received(bytes([0xB0, 3, 0, 1, 0]))  # UNSUBACK: a device never unsubscribes
    assert transport.aborted


def test_auto_ack_connection_answers_qos1_at_once() -> None:
    listener = Listener()
    conn = mqtt5.MqttConnection(listener)
    transport = FakeTransport()
    conn.connection_made(transport)
    conn.data_received(mqtt5.encode_publish(mqtt5.mqtt_string("rpm/v1/devices/d/commands"), b"{}", 77))
    assert transport.written == [b"\x40\x02\x00\x4d"]
    assert listener.events == [("message", ("rpm/v1/devices/d/commands", b"{}"))]


# --- what the broker's CONNACK asks of us (§3.2.2.3) ------------------------------------------
# Mosquitto 2.0.11's CONNACK with `max_inflight_messages 2`, `max_packet_size 1000` and
# `max_keepalive 10` to a CONNECT with Keep Alive 60, as read off the wire: Topic Alias
# Maximum 10, Server Keep Alive 10, Maximum Packet Size 1000, Receive Maximum 2.
MOSQUITTO_LIMITED_CONNACK = bytes.fromhex("201100000e22000a13000a27000003e8210002")


def test_connack_limits_are_kept_by_the_connection() -> None:
    conn, listener, transport = _manual()
    assert conn.limits == mqtt5.ServerLimits(keepalive=None, receive_maximum=65535, maximum_packet_size=None)
    conn.data_received(MOSQUITTO_LIMITED_CONNACK)
    assert not transport.aborted
    assert conn.limits == mqtt5.ServerLimits(keepalive=10, receive_maximum=2, maximum_packet_size=1000)
    assert listener.events[0][0] == "connack"
    assert conn.limits.fits(1000)
    assert not conn.limits.fits(1001)


def test_a_connack_without_limits_means_the_protocol_defaults() -> None:
    # Receive Maximum absent: 65,535 (§3.2.2.3.3); Maximum Packet Size absent: no limit
    # beyond the protocol's (§3.2.2.3.6); Server Keep Alive absent: ours stands (§3.2.2.3.14).
    limits = mqtt5.ServerLimits.from_connack({})
    assert (limits.keepalive, limits.receive_maximum, limits.maximum_packet_size) == (None, 65535, None)
    assert limits.fits(268_435_460)
    # A Server Keep Alive of 0 is a value: no keep alive at all.
    assert mqtt5.ServerLimits.from_connack({mqtt5.PROP_SERVER_KEEP_ALIVE: 0}).keepalive == 0


@pytest.mark.parametrize(
    ("prop", "message"),
    [(b"\x21\x00\x00", "Receive Maximum of 0"), (b"\x27\x00\x00\x00\x00", "Maximum Packet Size of 0")],
)
def test_a_connack_with_a_zero_limit_is_a_protocol_error(prop: bytes, message: str) -> None:
    conn, listener, transport = _manual()
    conn.data_received(_packet(0x20, b"\x00\x00" + _props(prop)))
    assert transport.aborted
    conn.connection_lost(None)
    lost = listener.events[-1][1]
    assert isinstance(lost, mqtt5.MqttProtocolError)
    assert message in str(lost)


def test_a_refused_connack_keeps_the_default_limits() -> None:
    conn, _listener, transport = _manual()
    conn.data_received(_packet(0x20, b"\x00\x86" + _props(b"\x21\x00\x00")))  # bad credentials
    assert not transport.aborted
    assert conn.limits == mqtt5.ServerLimits()


@given(
    st.text(min_size=1, max_size=40),
    st.one_of(st.binary(max_size=200), st.integers(min_value=100, max_value=20_000).map(lambda n: b"x" * n)),
    st.sampled_from([0, 1]),
)
def test_publish_size_is_the_size_on_the_wire(topic: str, payload: bytes, qos: int) -> None:
    # What Maximum Packet Size counts: the whole packet, fixed header included.
    encoded = mqtt5.mqtt_string(topic)
    assert mqtt5.publish_size(encoded, payload, qos) == len(mqtt5.encode_publish(encoded, payload, 7, qos=qos))


@pytest.mark.parametrize("remaining", [0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152])
def test_packet_size_counts_the_length_field(remaining: int) -> None:
    assert mqtt5.packet_size(remaining) == len(_packet(0x30, b"\x00" * remaining))


def test_connack_maximum_qos_and_retain_available() -> None:
    limits = mqtt5.ServerLimits.from_connack({mqtt5.PROP_MAXIMUM_QOS: 0, mqtt5.PROP_RETAIN_AVAILABLE: 0})
    assert (limits.maximum_qos, limits.retain_available) == (0, False)
    assert limits.refuses(retain=False) == (
        mqtt5.RC_QOS_NOT_SUPPORTED,
        "the broker's Maximum QoS is 0; readings need QoS 1",
    )
    one = mqtt5.ServerLimits.from_connack({mqtt5.PROP_MAXIMUM_QOS: 1, mqtt5.PROP_RETAIN_AVAILABLE: 0})
    assert one.refuses(retain=False) is None
    retained = one.refuses(retain=True)
    assert retained is not None
    assert retained[0] == mqtt5.RC_RETAIN_NOT_SUPPORTED
    assert mqtt5.ServerLimits.from_connack({}).refuses(retain=True) is None  # absent: QoS 2, retain offered
    for bad in ({mqtt5.PROP_MAXIMUM_QOS: 2}, {mqtt5.PROP_MAXIMUM_QOS: 7}, {mqtt5.PROP_RETAIN_AVAILABLE: 3}):
        with pytest.raises(mqtt5.MqttProtocolError):
            mqtt5.ServerLimits.from_connack(bad)  # type: ignore[arg-type]
