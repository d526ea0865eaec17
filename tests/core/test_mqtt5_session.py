"""`core.mqtt5_client.MqttSession` against the real Mosquitto of the test stack, logged in
as the ingest service: the persistent session keeps messages while we are away, a message
not acknowledged is redelivered after a lost connection, each is acknowledged once and
only on the connection it came in on, and our own QoS 1 publishes get the broker's verdict."""

from __future__ import annotations

import asyncio

import psycopg

from core.mqtt5 import Incoming
from core.mqtt5_client import MqttSession, SessionOptions
from core.wire import commands_topic, telemetry_topic
from infra.stack import Stack
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


def test_a_forbidden_subscription_is_refused(stack: Stack) -> None:
    options = _options(stack, unique("rpm-ingest-test"), "$share/x/somewhere/else/#")

    async def scenario() -> None:
        session = MqttSession(options, lambda _m: None)
        session.start()
        await asyncio.sleep(1.0)
        assert not session.connected.is_set()
        assert session.last_error is not None
        assert "SUBSCRIBE refused: 0x87" in session.last_error
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
