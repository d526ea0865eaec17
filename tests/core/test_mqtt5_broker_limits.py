"""`core.clients.mqtt5.MqttSession` and the limits a broker's CONNACK sets (Server Keep Alive,
Receive Maximum, Maximum Packet Size), against a Mosquitto of our own configured to send small
ones (`own_mosquitto` of test_mqtt5_session.py); the session against the test stack's broker is
in test_mqtt5_session.py."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator

import pytest

from core.clients import mqtt5
from core.clients.mqtt5 import MqttSession, SessionOptions
from tests.core.test_mqtt5_session import own_mosquitto
from tests.helpers import unique


@pytest.fixture(scope="module")
def limited_broker() -> Iterator[int]:
    """A Mosquitto whose CONNACK sets Receive Maximum 2, Maximum Packet Size 1000 and, to a
    client asking for more, Server Keep Alive 10 (10 is the smallest max_keepalive it takes)."""
    with own_mosquitto("max_inflight_messages 2\nmax_packet_size 1000\nmax_keepalive 10") as port:
        yield port


def _own_options(port: int, **extra: object) -> SessionOptions:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "client_id": unique("rpm-mqtt5-test"),
        "clean_start": True,
        "session_expiry": 0,
        "keepalive": 5,
        "backoff_min": 0.1,
        **extra,
    }
    return SessionOptions(**values)  # type: ignore[arg-type]


async def _packets(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One whole MQTT packet: (first byte, the packet's bytes)."""
    header = await reader.readexactly(1)
    length_bytes = b""
    while True:
        byte = await reader.readexactly(1)
        length_bytes += byte
        if not byte[0] & 0x80:
            break
    decoded = mqtt5.decode_varint(length_bytes, 0)
    assert decoded is not None
    body = await reader.readexactly(decoded[0])
    return header[0], header + length_bytes + body


class InflightProxy:
    """A TCP proxy between a session and the broker that counts the session's QoS 1
    PUBLISHes the broker has not acknowledged yet, and holds each PUBACK until the session
    has been quiet for 0.1 s: a client that ignores Receive Maximum sends past it meanwhile."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.outstanding: set[int] = set()
        self.most = 0
        self._last_from_client = 0.0
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.upstream)
        try:
            await asyncio.gather(self._from_client(client_r, broker_w), self._from_broker(broker_r, client_w))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for writer in (client_w, broker_w):
                writer.close()

    async def _from_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first, packet = await _packets(reader)
            self._last_from_client = loop.time()
            if first & 0xF0 == mqtt5.PUBLISH and (first >> 1) & 0x03 == 1:
                body_start = len(packet) - len(packet[1:]) + 1
                while packet[body_start - 1] & 0x80:  # the remaining-length bytes
                    body_start += 1
                topic_len = struct.unpack_from(">H", packet, body_start)[0]
                self.outstanding.add(struct.unpack_from(">H", packet, body_start + 2 + topic_len)[0])
                self.most = max(self.most, len(self.outstanding))
            writer.write(packet)
            await writer.drain()

    async def _from_broker(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first, packet = await _packets(reader)
            if first & 0xF0 == mqtt5.PUBACK:
                for _ in range(1000):  # bounded: 0.1 s of quiet comes unless the client floods
                    if (wait := self._last_from_client + 0.1 - loop.time()) <= 0:
                        break
                    await asyncio.sleep(wait)
                self.outstanding.discard(struct.unpack_from(">H", packet, 2)[0])
            writer.write(packet)
            await writer.drain()


def test_publishes_in_flight_never_exceed_the_brokers_receive_maximum(limited_broker: int) -> None:
    async def scenario() -> None:
        proxy = InflightProxy(limited_broker)
        session = MqttSession(_own_options(await proxy.start()), lambda _m: None)
        session.start()
        async with asyncio.timeout(10):
            await session.connected.wait()
        assert session.limits.receive_maximum == 2
        answers = [session.publish(f"rpm-test/{n}", b"%d" % n) for n in range(12)]
        assert (session.inflight_publishes, session.pending_publishes) == (2, 12)
        async with asyncio.timeout(60):
            codes = await asyncio.gather(*answers)
        assert all(code < 0x80 for code in codes)
        assert proxy.most == 2  # the window was used, never exceeded
        await session.close()
        await proxy.stop()

    asyncio.run(scenario())


def test_a_publish_above_the_brokers_maximum_packet_size_is_refused_and_the_connection_kept(
    limited_broker: int,
) -> None:
    async def scenario() -> None:
        lost: list[str] = []
        session = MqttSession(_own_options(limited_broker), lambda _m: None, on_disconnected=lost.append)
        # Queued before any CONNACK told the limit: checked again before it is sent.
        early_big = session.publish("rpm-test/big", b"x" * 2000)
        early_small = session.publish("rpm-test/small", b"x")
        session.start()
        async with asyncio.timeout(10):
            assert await early_big == mqtt5.RC_PACKET_TOO_LARGE
            assert await early_small < 0x80
        assert session.limits.maximum_packet_size == 1000
        big = session.publish("rpm-test/big", b"x" * 2000)
        assert big.done()  # refused at once, never sent
        assert big.result() == mqtt5.RC_PACKET_TOO_LARGE
        topic = mqtt5.mqtt_string("rpm-test/fit")
        # 1 byte of packet type, 2 of remaining length, 997 of topic, packet id, properties, payload.
        fitting = b"x" * (997 - len(topic) - 3)
        assert mqtt5.publish_size(topic, fitting) == 1000
        async with asyncio.timeout(10):
            assert await session.publish("rpm-test/fit", fitting) < 0x80
            assert await session.publish("rpm-test/fit", fitting + b"x") == mqtt5.RC_PACKET_TOO_LARGE
        # Mosquitto disconnects a client that sends a packet above its limit: it never had to.
        assert (session.connects, lost) == (1, [])
        await session.close()

    asyncio.run(scenario())


def test_the_brokers_server_keep_alive_replaces_ours(limited_broker: int) -> None:
    # We ask for 60 s; Mosquitto answers Server Keep Alive 10 and drops a client silent for
    # 1.5 x 10 s. Pinging on our own 60 s would lose the connection within 20 s.
    async def scenario() -> None:
        lost: list[str] = []
        session = MqttSession(_own_options(limited_broker, keepalive=60), lambda _m: None, on_disconnected=lost.append)
        session.start()
        async with asyncio.timeout(10):
            await session.connected.wait()
        assert (session.limits.keepalive, session.keepalive) == (10, 10)
        await asyncio.sleep(20)
        assert session.connected.is_set()
        assert (session.connects, lost) == (1, [])
        await session.close()

    asyncio.run(scenario())


def test_publishes_held_while_disconnected_are_bounded(limited_broker: int) -> None:
    async def scenario() -> None:
        session = MqttSession(_own_options(limited_broker, max_pending_publishes=3), lambda _m: None)
        answers = [session.publish(f"rpm-test/{n}", b"%d" % n) for n in range(5)]
        assert [a.done() for a in answers] == [False, False, False, True, True]
        assert [a.result() for a in answers[3:]] == [mqtt5.RC_QUOTA_EXCEEDED] * 2
        assert session.pending_publishes == 3
        session.start()
        async with asyncio.timeout(10):
            assert all(code < 0x80 for code in await asyncio.gather(*answers[:3]))
            assert await session.publish("rpm-test/after", b"room again") < 0x80
        await session.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("general", "listener", "retain", "refused"),
    [
        # max_qos is a listener setting: before any `listener` line it would open port 1883
        ("", "max_qos 0", False, mqtt5.RC_QOS_NOT_SUPPORTED),
        ("retain_available false", "", True, mqtt5.RC_RETAIN_NOT_SUPPORTED),
    ],
)
def test_a_publish_the_brokers_connack_rules_out_is_refused_and_the_connection_kept(
    general: str, listener: str, retain: bool, refused: int
) -> None:
    """Maximum QoS (MQTT-3.2.2-11) and Retain Available (MQTT-3.2.2-14): a publish the broker
    said it does not take is refused before it is sent, also one queued before the CONNACK;
    Mosquitto would disconnect a client that sent it."""

    async def scenario(port: int) -> None:
        lost: list[str] = []
        session = MqttSession(_own_options(port), lambda _m: None, on_disconnected=lost.append)
        early = session.publish("rpm-test/early", b"x", retain=retain)
        session.start()
        async with asyncio.timeout(10):
            assert await early == refused
        later = session.publish("rpm-test/later", b"x", retain=retain)
        assert later.done()  # at once, never sent
        assert later.result() == refused
        if refused == mqtt5.RC_RETAIN_NOT_SUPPORTED:
            async with asyncio.timeout(10):  # the same publish without RETAIN goes through
                assert await session.publish("rpm-test/later", b"x") < 0x80
        assert (session.connects, lost) == (1, [])
        await session.close()

    with own_mosquitto(general, listener) as port:
        asyncio.run(scenario(port))
