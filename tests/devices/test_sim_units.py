"""Unit tests of the simulator's pure parts: MQTT packet codec, physiology, outbox."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from core.catalogue import DEVICE_CLASSES
from core.clients import mqtt5 as mqtt
from devices.simulator import clinical
from devices.simulator.outbox import Outbox
from devices.simulator.physiology import (
    HR,
    RR,
    SPO2,
    TEMP,
    PatientSpec,
    Population,
    noise_keys,
    normals,
)
from devices.simulator.schedule import DEVICE_SPECS, SimClock

T0 = 1_740_787_200.0  # 2025-03-01T00:00:00Z


@given(st.integers(min_value=0, max_value=268_435_455))
def test_varint_round_trip(n: int) -> None:
    encoded = mqtt.varint(n)
    assert len(encoded) <= 4
    assert mqtt.decode_varint(encoded, 0) == (n, len(encoded))


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=65535), st.booleans())
def test_publish_packet_layout(payload: bytes, packet_id: int, retain: bool) -> None:
    topic = "rpm/v1/devices/d-1/telemetry"
    packet = mqtt.encode_publish(mqtt.mqtt_string(topic), payload, packet_id, retain=retain)
    assert packet[0] == 0x32 | (1 if retain else 0)  # PUBLISH, QoS 1
    length, pos = mqtt.decode_varint(packet, 1) or (0, 0)
    assert len(packet) - pos == length
    assert packet[pos + 2 : pos + 2 + len(topic)] == topic.encode()
    body = packet[pos + 2 + len(topic) :]
    assert int.from_bytes(body[:2], "big") == packet_id
    assert body[2] == 0  # no properties
    assert body[3:] == payload


def test_incoming_packets_reach_the_listener() -> None:
    events: list[tuple[str, object]] = []

    class Listener:
        def on_connack(self, reason: int, props: dict[int, int | bytes]) -> None:
            events.append(("connack", (reason, props)))

        def on_puback(self, packet_id: int, reason: int) -> None:
            events.append(("puback", (packet_id, reason)))

        def on_suback(self, packet_id: int, reasons: bytes) -> None:
            events.append(("suback", (packet_id, reasons)))

        def on_message(self, topic: str, payload: bytes) -> None:
            events.append(("message", (topic, payload)))

        def on_server_disconnect(self, reason: int) -> None:
            events.append(("disconnect", reason))

        def on_lost(self, exc: Exception | None) -> None:
            events.append(("lost", exc))

    conn = mqtt.MqttConnection(Listener())
    connack = bytes([0x20, 6, 0, 0, 3, 0x21, 0x00, 0x14])  # success, Receive Maximum 20
    puback_short = bytes([0x40, 2, 0, 7])  # reason omitted = success
    puback_refused = bytes([0x40, 4, 0, 8, 0x87, 0])
    incoming = mqtt.encode_publish(mqtt.mqtt_string("rpm/v1/devices/d/commands"), b'{"command":"resend"}', 0, qos=0)
    stream = connack + puback_short + puback_refused + incoming
    for i in range(0, len(stream), 3):  # split across reads on purpose
        conn.data_received(stream[i : i + 3])
    assert events == [
        ("connack", (0, {mqtt.PROP_RECEIVE_MAXIMUM: 20})),
        ("puback", (7, 0)),
        ("puback", (8, 0x87)),
        ("message", ("rpm/v1/devices/d/commands", b'{"command":"resend"}')),
    ]
    assert mqtt.is_failure(0x87)
    assert not mqtt.is_failure(mqtt.RC_NO_MATCHING_SUBSCRIBERS)


def test_noise_is_standard_normal_and_keyed() -> None:
    draws = normals(noise_keys(12345, np.arange(200_000)), 0)
    assert abs(draws.mean()) < 0.01
    assert abs(draws.std() - 1.0) < 0.01
    again = normals(noise_keys(12345, np.arange(200_000)[::-1]), 0)[::-1]
    assert np.array_equal(draws, again)  # order of evaluation does not matter
    assert not np.array_equal(draws, normals(noise_keys(12346, np.arange(200_000)), 0))


def test_cohorts_circadian_rhythm_and_coupling() -> None:
    pop = Population([PatientSpec("h", "healthy"), PatientSpec("c", "copd"), PatientSpec("d", "diabetes")], seed=5)
    t = T0 + np.arange(0, 86400 * 7, 600.0)
    idx = {p: np.full(len(t), i) for i, p in enumerate("hcd")}
    healthy, copd, diabetes = (pop.true_state(idx[p], t) for p in "hcd")
    assert 94 <= healthy[:, SPO2].mean() <= 100
    assert 86 <= copd[:, SPO2].mean() <= 94  # COPD target range 88-92 %
    assert diabetes[:, 7].max() - diabetes[:, 7].min() > 60  # meals
    hour = (t % 86400) / 3600
    night, afternoon = (hour >= 2) & (hour < 5), (hour >= 15) & (hour < 18)
    assert healthy[night, TEMP].mean() < healthy[afternoon, TEMP].mean()
    assert pop.news2_scale.tolist() == [1, 2, 1]
    # Fever raises heart and respiration rate.
    fever = np.zeros((len(t), 8))
    fever[:, TEMP] = 2.0
    febrile = pop.true_state(idx["h"], t, (fever, np.zeros_like(fever), np.zeros_like(fever)))
    assert (febrile[:, HR] - healthy[:, HR]).mean() > 15
    assert (febrile[:, RR] - healthy[:, RR]).mean() > 3


def test_clock_never_runs_ahead_of_the_wall_clock() -> None:
    clock = SimClock(start=T0 - 3600, speed=60, wall0=T0)
    assert clock.sim(30) == T0 - 3600 + 1800
    caught_up = clock.catch_up
    assert caught_up < 70
    assert clock.sim(100) == T0 + 100  # real time after catching up
    for offset in (0.0, 10.0, caught_up, 100.0):
        assert abs(clock.offset_of(clock.sim(offset)) - offset) < 1e-6


def test_outbox_keeps_pending_messages_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    box = Outbox(path, keep_acked=2)
    for seq in range(1, 8):
        box.add("d1", seq, f"m{seq}".encode())
    box.commit()
    for seq in (1, 2, 3, 4):
        box.ack("d1", seq)
    box.refuse("d1", 5, 0x87)
    box.close()

    box = Outbox(path, keep_acked=2)
    backlog = box.load(["d1", "d2"], memory_cap=1)
    assert backlog["d1"].next_seq == 8
    assert backlog["d1"].pending == [(6, b"m6")]
    assert backlog["d1"].more_pending is True
    assert backlog["d2"].next_seq == 1
    assert box.history_from("d1", 3, 10) == [(3, b"m3"), (4, b"m4"), (6, b"m6"), (7, b"m7")]
    box.prune({"d1": 4})
    assert [s for s, _ in box.history_from("d1", 1, 10)] == [3, 4, 6, 7]  # the last 2 acked stay
    assert box.counts() == {"pending": 2, "acked": 2, "refused": 1}
    box.close()


class FakeConnection:
    """Stands in for a socket: records the packets a link writes."""

    def __init__(self) -> None:
        self.packets: list[bytes] = []
        self.last_rx = 0.0

    def write(self, data: bytes) -> bool:
        self.packets.append(data)
        return True

    def abort(self) -> None: ...

    def published(self) -> list[tuple[int, bytes]]:
        """(packet id, payload) of the PUBLISH packets written, in order."""
        out = []
        for p in self.packets:
            if p[0] & 0xF0 != mqtt.PUBLISH:
                continue
            _length, pos = mqtt.decode_varint(p, 1) or (0, 0)
            size = int.from_bytes(p[pos : pos + 2], "big")
            pos += 2 + size
            out.append((int.from_bytes(p[pos : pos + 2], "big"), p[pos + 3 :]))
        return out


def test_link_sends_in_order_within_its_window_and_resends_after_a_lost_connection(tmp_path: Path) -> None:
    import asyncio

    from devices.simulator.device import Entry, Fleet
    from devices.simulator.groundtruth import GroundTruth

    async def scenario() -> None:
        box = Outbox(tmp_path / "q.sqlite3")
        fleet = Fleet("127.0.0.1", 1, box, GroundTruth(None), window=3)
        link = fleet.add(0, "d1", "pw")
        conn = FakeConnection()
        link.conn, link.online, link.window = conn, True, 3  # type: ignore[assignment]
        for seq in range(1, 7):
            box.add("d1", seq, b"m%d" % seq)
        box.commit()
        for seq in range(1, 7):
            link.enqueue(Entry(seq, b"m%d" % seq, 4))
        first = conn.published()
        assert [p for _, p in first] == [b"m1", b"m2", b"m3"]  # window of 3
        ids = {p: pid for pid, p in first}
        link.on_puback(ids[b"m2"], 0x00)  # out of order: m1 still outstanding
        assert [p for _, p in conn.published()][3:] == [b"m4"]
        link.on_puback(ids[b"m3"], 0x10)  # "no matching subscribers" is success
        link.on_puback(ids[b"m1"], 0x87)  # refused: final, counted, not retried
        assert link.acked_upto == 3
        assert (fleet.stats.acked, fleet.stats.failed) == (2, 1)
        link.online = True
        link.on_lost(None)  # connection lost with m4, m5, m6 in flight
        link.wanted = False
        conn2 = FakeConnection()
        link.conn, link.online = conn2, True  # type: ignore[assignment]
        link.pump()
        assert [p for _, p in conn2.published()] == [b"m4", b"m5", b"m6"]  # again, in order
        for pid, _ in conn2.published():
            link.on_puback(pid, 0)
        assert link.pending == 0
        assert link.acked_upto == 6
        box.commit()
        assert box.counts() == {"pending": 0, "acked": 5, "refused": 1}
        box.close()

    asyncio.run(scenario())


def test_a_failed_device_task_stops_the_run_with_its_name(tmp_path: Path) -> None:
    import asyncio

    from devices.simulator.device import Fleet
    from devices.simulator.groundtruth import GroundTruth

    async def scenario() -> str | None:
        fleet = Fleet("127.0.0.1", 1, Outbox(tmp_path / "q.sqlite3"), GroundTruth(None), window=3)

        async def broken() -> None:
            raise RuntimeError("link bug")

        fleet.spawn(broken(), name="connect-d1")
        await asyncio.wait_for(fleet.failed.wait(), 5)
        await fleet.shutdown()
        return fleet.failure

    failure = asyncio.run(scenario())
    assert failure == "task 'connect-d1' raised RuntimeError: link bug"


def test_a_device_follows_the_brokers_server_keep_alive(tmp_path: Path) -> None:
    import asyncio

    from devices.simulator.device import Fleet
    from devices.simulator.groundtruth import GroundTruth
    from tests.core.test_mqtt5_session import own_mosquitto

    async def scenario(port: int) -> tuple[int, int]:
        fleet = Fleet("127.0.0.1", port, Outbox(tmp_path / "q.sqlite3"), GroundTruth(None), window=3, keepalive=60)
        link = fleet.add(0, "dev-ka", "pw")
        link.start()
        await asyncio.wait_for(fleet.ever_connected.wait(), 15)
        asked, granted = fleet.keepalive, link.keepalive
        await fleet.shutdown()
        return asked, granted

    # Mosquitto answers a client asking for 60 s with Server Keep Alive 10 (MQTT 5 §3.2.2.3.14).
    with own_mosquitto("max_keepalive 10") as port:
        assert asyncio.run(scenario(port)) == (60, 10)


def test_ground_truth_news2_scores_a_late_cuff_reading_as_the_platform_does() -> None:
    """A cuff reading flushed after newer wearable readings counts at once (ADR 0015); an
    older value of a parameter arriving late changes nothing."""
    monitor = clinical.News2Monitor(scale=1, on_oxygen=False)
    calm = {"heart_rate": 72.0, "resp_rate": 16.0, "spo2": 97.0, "body_temp": 37.0}
    assert monitor.observe(100.0, calm) is None
    assert monitor.observe(200.0, calm) is None
    assert monitor.score(200.0) == (0, 0)
    assert monitor.observe(150.0, {"bp_systolic": 85.0}) == "news2_single_parameter"
    assert monitor.score(200.0) == (3, 3)
    assert monitor.observe(120.0, {"heart_rate": 140.0}) is None  # older than the kept 72
    assert monitor.score(200.0) == (3, 3)


def test_the_simulator_describes_exactly_the_platforms_device_classes() -> None:
    assert set(DEVICE_SPECS) == set(DEVICE_CLASSES)
    assert all(spec.name == name for name, spec in DEVICE_SPECS.items())
