"""MQTT over TLS, as the bridge speaks it with `RPM_MQTT_TLS` (an `ssl.create_default_context`
trusting `RPM_MQTT_CA_FILE`), against a Mosquitto of our own with a TLS listener: a throwaway
CA and server certificate are made with the `openssl` command in a temporary directory."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.clients.mqtt5 import Incoming, MqttSession, SessionOptions
from tests.core.test_mqtt5_session import _until, own_mosquitto
from tests.helpers import unique

_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _openssl(where: Path, *args: str) -> None:
    out = subprocess.run(["openssl", *args], cwd=where, capture_output=True, text=True, check=False)
    assert out.returncode == 0, f"openssl {' '.join(args)}: {out.stderr}"


def _make_ca(where: Path, name: str) -> None:
    _openssl(where, "req", "-x509", *_EC_KEY, "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
             "-subj", f"/CN=rpm test {name}")  # fmt: skip


def _make_server_certificate(where: Path, ca: str) -> None:
    (where / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(where, "req", *_EC_KEY, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    _openssl(where, "x509", "-req", "-in", "server.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext")  # fmt: skip


@pytest.fixture(scope="module")
def tls_broker() -> Iterator[tuple[int, Path]]:
    """(port, directory holding ca.crt and stranger.crt) of a Mosquitto with only a TLS listener,
    its certificate signed by ca.crt."""
    where = Path(tempfile.mkdtemp(prefix="rpm-mqtt5-tls-"))
    try:
        _make_ca(where, "ca")
        _make_ca(where, "stranger")  # a CA the broker's certificate does not come from
        _make_server_certificate(where, "ca")
        listener = "cafile {dir}/ca.crt\ncertfile {dir}/server.crt\nkeyfile {dir}/server.key"
        with own_mosquitto(listener=listener, directory=where) as port:
            yield port, where
    finally:
        shutil.rmtree(where, ignore_errors=True)


def _options(port: int, cafile: Path, **extra: object) -> SessionOptions:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "client_id": unique("rpm-mqtt5-tls"),
        "clean_start": True,
        "session_expiry": 0,
        "keepalive": 5,
        "backoff_min": 0.1,
        "ssl": ssl.create_default_context(cafile=str(cafile)),  # as IngestSettings.session_options
        **extra,
    }
    return SessionOptions(**values)  # type: ignore[arg-type]


def test_publish_and_receive_over_tls(tls_broker: tuple[int, Path]) -> None:
    port, where = tls_broker

    async def scenario() -> None:
        received: list[Incoming] = []
        arrived = asyncio.Event()

        def on_messages(messages: list[Incoming]) -> None:
            received.extend(messages)
            arrived.set()

        options = _options(port, where / "ca.crt", subscriptions=(("rpm-test/tls/#", 1),))
        session = MqttSession(options, on_messages)
        session.start()
        async with asyncio.timeout(10):
            await session.connected.wait()
        assert session.connection is not None
        assert session.connection.transport is not None
        assert session.connection.transport.get_extra_info("peercert")["subjectAltName"] == (
            ("IP Address", "127.0.0.1"),
            ("DNS", "localhost"),
        )
        async with asyncio.timeout(10):
            assert await session.publish("rpm-test/tls/a", b"over TLS") == 0x00  # we are the subscriber
            await arrived.wait()
        (message,) = received
        assert (message.topic, message.payload, message.qos) == ("rpm-test/tls/a", b"over TLS", 1)
        assert session.ack(received) == 1
        await session.close()

    asyncio.run(scenario())


def test_a_broker_certificate_from_another_ca_is_refused_clearly(tls_broker: tuple[int, Path]) -> None:
    port, where = tls_broker

    async def scenario() -> None:
        session = MqttSession(_options(port, where / "stranger.crt"), lambda _m: None)
        session.start()
        await _until(lambda: session.last_error is not None)
        assert session.last_error is not None
        assert "SSLCertVerificationError" in session.last_error
        assert "CERTIFICATE_VERIFY_FAILED" in session.last_error
        assert not session.connected.is_set()
        assert session.connects == 0
        async with asyncio.timeout(10):  # nothing hangs on the way out either
            await session.close()

    asyncio.run(scenario())
