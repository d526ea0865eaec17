"""`core.clients.mqtt5.MqttSession` against the real Mosquitto of the test stack, logged in
as the ingest service: the persistent session keeps messages while we are away, a message
not acknowledged is redelivered after a lost connection, each is acknowledged once and
only on the connection it came in on, and our own QoS 1 publishes get the broker's verdict.

The limits a broker's CONNACK sets (Server Keep Alive, Receive Maximum, Maximum Packet Size)
are tested in test_mqtt5_broker_limits.py, against a Mosquitto of our own configured to send
small ones (`own_mosquitto`, below; also used by test_mqtt5_tls.py)."""

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

from core.clients import mqtt5
from core.clients.mqtt5 import MAX_PENDING_PUBLISHES, Incoming, MqttSession, SessionOptions, SessionRefusedError
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
    from core.clients.mqtt5.session import _Link

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


# --- a Mosquitto of our own (test_mqtt5_broker_limits.py, test_mqtt5_tls.py) --------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def own_mosquitto(general: str = "", listener: str = "", directory: Path | None = None) -> Iterator[int]:
    """A Mosquitto of our own (anonymous, no persistence) on a free port, configured like the
    stack's (infra/stack/services.py: as user mosquitto when we are root, TCP_NODELAY) plus `general`
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
