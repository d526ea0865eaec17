"""`core.mqtt5_client.MqttSession` against the real Mosquitto of the test stack, logged in
as the ingest service: the persistent session keeps messages while we are away, a message
not acknowledged is redelivered after a lost connection, each is acknowledged once and
only on the connection it came in on, and our own QoS 1 publishes get the broker's verdict.

The limits a broker's CONNACK sets (Server Keep Alive, Receive Maximum, Maximum Packet Size)
are tested against a Mosquitto of our own configured to send small ones (`own_mosquitto`,
also used by test_mqtt5_tls.py)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pwd
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from core import mqtt5
from core.mqtt5 import Incoming
from core.mqtt5_client import MAX_PENDING_PUBLISHES, MqttSession, SessionOptions, SessionRefusedError
from core.wire import commands_topic, telemetry_topic
from infra.stack import Stack
from tests.core.test_mqtt5 import FakeTransport
from tests.helpers import Device, create_patient, provision, unique


def _options(stack: Stack, client_id: str, topic_filter: str, **extra: object) -> SessionOptions:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": stack.ports.mqtt,
        "client_id": client_id,
        "username": "rpm-ingest",
        "password": stack.secrets.mqtt_ingest_password,
        # A group of our own, so a running bridge (group "ingest") does not share these.
        "subscriptions": ((topic_filter, 1),),
        "session_expiry": 120,
        "receive_maximum": 50,
        "keepalive": 5,
        "backoff_min": 0.1,
        **extra,
    }
    return SessionOptions(**values)  # type: ignore[arg-type]


async def _until(condition: Callable[[], bool]) -> None:
    """Wait until `condition()` holds, checking every 50 ms; TimeoutError after 10 s."""
    async with asyncio.timeout(10):
        for _ in itertools.count():
            if condition():
                return
            await asyncio.sleep(0.05)


class Inbox:
    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.messages: list[Incoming] = []
        self.changed = asyncio.Event()

    def __call__(self, messages: list[Incoming]) -> None:
        self.messages += [m for m in messages if m.topic == self.topic]
        self.changed.set()

    async def wait_for(self, count: int) -> list[Incoming]:
        async with asyncio.timeout(10):
            while len(self.messages) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.messages


def test_persistent_session_redelivers_what_was_not_acknowledged(stack: Stack, db: psycopg.Connection) -> None:
    creds = provision(stack, create_patient(db))
    topic = telemetry_topic(creds.device_id)
    options = _options(stack, unique("rpm-ingest-test"), f"$share/{unique('g')}/rpm/v1/devices/+/telemetry")

    async def subscribe_then_leave() -> None:
        session = MqttSession(options, Inbox(topic))
        session.start()
        async with asyncio.timeout(10):
            await session.connected.wait()
        assert not session.session_present
        await session.close()

    asyncio.run(subscribe_then_leave())

    # Published while the subscriber is away: the broker keeps them in its session.
    device = Device(stack, creds.username, creds.password)
    device.connect()
    for n in range(5):
        assert device.publish(topic, b"m%d" % n).value < 0x80
    device.close()

    async def come_back() -> None:
        inbox = Inbox(topic)
        sessions: list[bool] = []
        reconnected = asyncio.Event()

        def on_connected(session_present: bool) -> None:
            sessions.append(session_present)
            if len(sessions) == 2:
                reconnected.set()

        session = MqttSession(options, inbox, on_connected=on_connected)
        session.start()
        first = list(await inbox.wait_for(5))
        async with asyncio.timeout(10):
            await session.connected.wait()  # the queued messages may come before the SUBACK
        assert session.session_present
        assert session.connects == 1
        assert [m.payload for m in first] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
        assert session.ack(first[:2]) == 2
        assert session.ack(first[:2]) == 0  # acknowledged exactly once

        assert session.connection is not None
        session.connection.abort()  # lost without DISCONNECT, as when the process dies
        again = (await inbox.wait_for(8))[5:]
        async with asyncio.timeout(10):
            await reconnected.wait()
        assert sessions == [True, True]
        assert [m.payload for m in again] == [b"m2", b"m3", b"m4"]
        assert all(m.dup for m in again)
        # The old connection's records are never acknowledged on the new one: their packet
        # ids now belong to the redelivered copies.
        assert session.ack(first) == 0
        assert session.ack(again) == 3

        # Our own QoS 1 publishes come back with the broker's reason code.
        allowed = await session.publish(commands_topic(creds.device_id), b'{"command":"resend","from_seq":1}')
        assert allowed < 0x80
        refused = await session.publish(topic, b"the ingest service may not speak for a device")
        assert refused == 0x87
        await session.close()

    asyncio.run(come_back())

    async def nothing_left() -> None:
        inbox = Inbox(topic)
        session = MqttSession(options, inbox)
        session.start()
        async with asyncio.timeout(10):
            await session.connected.wait()
        await asyncio.sleep(1.0)
        assert session.session_present
        assert inbox.messages == []
        await session.close()

    asyncio.run(nothing_left())


def test_a_refused_login_is_retried_with_backoff_and_reported(stack: Stack) -> None:
    options = _options(stack, unique("rpm-ingest-test"), "$share/x/rpm/v1/devices/+/telemetry", password="wrong")

    async def scenario() -> None:
        session = MqttSession(options, lambda _m: None)
        session.start()
        await asyncio.sleep(1.5)
        assert not session.connected.is_set()
        assert session.connects == 0
        assert session.last_error is not None
        assert "CONNECT refused: 0x8" in session.last_error
        await session.close()

    asyncio.run(scenario())


def test_a_forbidden_subscription_is_refused_and_named(stack: Stack) -> None:
    allowed, forbidden = f"$share/{unique('g')}/rpm/v1/devices/+/status", "$share/x/somewhere/else/#"
    options = _options(stack, unique("rpm-ingest-test"), allowed, subscriptions=((allowed, 1), (forbidden, 1)))

    async def scenario() -> None:
        session = MqttSession(options, lambda _m: None)
        session.start()
        await _until(lambda: session.last_error is not None)
        assert not session.connected.is_set()
        assert session.last_error is not None
        assert "SUBSCRIBE refused: 0x87 not authorized (topic filter '$share/x/somewhere/else/#')" in session.last_error
        assert allowed not in session.last_error
        await session.close()

    asyncio.run(scenario())


def test_leaving_ends_the_session_without_dropping_what_it_held(stack: Stack, db: psycopg.Connection) -> None:
    creds = provision(stack, create_patient(db))
    topic = telemetry_topic(creds.device_id)
    group = unique("g")
    leaver = _options(stack, unique("rpm-ingest-leaver"), f"$share/{group}/rpm/v1/devices/+/telemetry")
    stayer = _options(stack, unique("rpm-ingest-stayer"), f"$share/{group}/rpm/v1/devices/+/telemetry")
    device = Device(stack, creds.username, creds.password)
    device.connect()

    async def scenario() -> None:
        left_inbox, stay_inbox = Inbox(topic), Inbox(topic)
        leaving = MqttSession(leaver, left_inbox)
        staying = MqttSession(stayer, lambda m: (stay_inbox(m), staying.ack(m)))
        for session in (leaving, staying):
            session.start()
            async with asyncio.timeout(10):
                await session.connected.wait()
        for n in range(10):
            assert (await asyncio.to_thread(device.publish, topic, b"a%d" % n)).value < 0x80
        held = await left_inbox.wait_for(1)  # the group shares: the leaver holds part of them
        await leaving.unsubscribe()
        for n in range(10):
            assert (await asyncio.to_thread(device.publish, topic, b"b%d" % n)).value < 0x80
        await asyncio.sleep(0.5)
        assert all(m.payload.startswith(b"a") for m in left_inbox.messages)  # nothing new routed to it
        assert leaving.ack(held) == len(held)
        await leaving.close(end_session=True)
        assert {m.payload for m in stay_inbox.messages} | {m.payload for m in held} == {
            *(b"a%d" % n for n in range(10)),
            *(b"b%d" % n for n in range(10)),
        }
        # The session is gone: the same client id starts afresh, with nothing to redeliver.
        again = MqttSession(leaver, left_inbox)
        again.start()
        async with asyncio.timeout(10):
            await again.connected.wait()
        assert not again.session_present
        await again.close(end_session=True)
        await staying.close(end_session=True)

    asyncio.run(scenario())
    device.close()


def test_a_quiet_session_stays_up_on_pings(stack: Stack) -> None:
    # Mosquitto drops a client silent for 1.5 keepalives; keepalive 1 s over 4 s of silence
    # only holds if the session pings.
    options = _options(stack, unique("rpm-ingest-test"), f"$share/{unique('g')}/rpm/v1/devices/+/status", keepalive=1)

    async def scenario() -> None:
        lost: list[str] = []
        session = MqttSession(options, lambda _m: None, on_disconnected=lost.append)
        session.start()
        async with asyncio.timeout(10):
            await session.connected.wait()
        await asyncio.sleep(4)
        assert session.connected.is_set()
        assert (session.connects, lost) == (1, [])
        await session.close(end_session=True)

    asyncio.run(scenario())


def test_every_packet_id_held_refuses_the_next_publish_instead_of_spinning(stack: Stack) -> None:
    # The most publishes a session may hold leaves two packet ids free: the SUBSCRIBE of
    # the next connection still gets one.
    with pytest.raises(ValueError, match="max_pending_publishes"):
        _options(stack, "x", "a", max_pending_publishes=MAX_PENDING_PUBLISHES + 1)
    options = _options(
        stack,
        unique("rpm-ingest-test"),
        f"$share/{unique('g')}/rpm/v1/devices/+/status",
        max_pending_publishes=MAX_PENDING_PUBLISHES,
    )
    topic = commands_topic(unique("dev"))

    async def scenario() -> None:
        session = MqttSession(options, lambda _m: None)
        held = [session.publish(topic, b"%d" % n) for n in range(MAX_PENDING_PUBLISHES)]
        assert not any(answer.done() for answer in held)
        one_more = session.publish(topic, b"one more")
        assert one_more.done()
        assert one_more.result() == mqtt5.RC_QUOTA_EXCEEDED
        session.start()
        async with asyncio.timeout(240):
            codes = await asyncio.gather(*held)
        assert session.connects == 1
        assert all(code < 0x80 for code in codes)
        assert session.pending_publishes == 0
        async with asyncio.timeout(10):  # packet ids wrap around past 65,535
            assert all(code < 0x80 for code in await asyncio.gather(*(session.publish(topic, b"x") for _ in range(5))))
        await session.close(end_session=True)

    asyncio.run(scenario())


def test_acknowledgements_are_matched_to_their_packet_ids() -> None:
    # White-box, without a broker: Mosquitto never answers out of order or with a packet id
    # we did not use, so the session's own request/answer matching is driven directly.
    from core.mqtt5_client import _Link

    async def scenario() -> None:
        session = MqttSession(SessionOptions("127.0.0.1", 1, "c"), lambda _m: None)
        link = _Link(session, asyncio.get_running_loop())
        conn = mqtt5.ManualAckConnection(link)
        transport = FakeTransport()
        conn.connection_made(transport)
        first = asyncio.create_task(session._subscribe(conn, link, [("a/#", 1)]))
        second = asyncio.create_task(session._subscribe(conn, link, [("b/#", 1), ("c/#", 1)]))
        unsubscribing = asyncio.create_task(
            session._request(conn, "UNSUBSCRIBE", lambda pid: mqtt5.encode_unsubscribe(pid, ["d/#"]), link.unsubacks)
        )
        await asyncio.sleep(0)
        first_id, second_id, unsub_id = (struct.unpack_from(">H", packet, 2)[0] for packet in transport.written)
        assert len({first_id, second_id, unsub_id}) == 3
        # Answered in another order than asked: each answer reaches the request of its id.
        conn.data_received(bytes([0xB0, 4, *struct.pack(">H", unsub_id), 0, 0x11]))
        conn.data_received(bytes([0x90, 5, *struct.pack(">H", second_id), 0, 0x01, 0x87]))
        conn.data_received(bytes([0x90, 4, *struct.pack(">H", first_id), 0, 0x01]))
        assert await unsubscribing == b"\x11"  # no subscription existed: not a failure
        await first
        with pytest.raises(SessionRefusedError, match=r"0x87 not authorized \(topic filter 'c/#'\)"):
            await second
        assert not transport.aborted
        # An acknowledgement nobody awaits is a protocol error: the connection is dropped.
        conn.data_received(bytes([0x90, 4, *struct.pack(">H", first_id), 0, 0x01]))
        assert transport.aborted

    asyncio.run(scenario())


# --- the limits a broker's CONNACK sets, against a Mosquitto of our own -----------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def own_mosquitto(general: str = "", listener: str = "", directory: Path | None = None) -> Iterator[int]:
    """A Mosquitto of our own (anonymous, no persistence) on a free port, configured like the
    stack's (infra/stack.py: as user mosquitto when we are root, TCP_NODELAY) plus `general`
    and `listener` settings; `{dir}` in them is its directory (a fresh one under /tmp unless
    given, e.g. holding certificates). Yields its port; stopped by its pid."""
    owned = directory is None
    where = Path(tempfile.mkdtemp(prefix="rpm-mqtt5-test-")) if directory is None else directory
    where.chmod(0o755)
    user = pwd.getpwnam("mosquitto") if os.geteuid() == 0 else None
    port = free_port()
    conf = where / "mosquitto.conf"
    conf.write_text(
        "\n".join(
            [
                "per_listener_settings false",
                "allow_anonymous true",
                "set_tcp_nodelay true",
                "persistence false",
                "log_dest stdout",
                "log_type error",
                "log_type warning",
                "log_type notice",
                f"user {user.pw_name}" if user else "",
                general.format(dir=where),
                f"listener {port} 127.0.0.1",
                listener.format(dir=where),
                "",
            ]
        )
    )
    if user is not None:
        for path in [where, *where.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)
    log_path = where / "mosquitto.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mosquitto exited with {proc.returncode}: {log_path.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"mosquitto not listening on {port}: {log_path.read_text()}")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if owned:
            shutil.rmtree(where, ignore_errors=True)


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
