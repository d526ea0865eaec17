"""What an MQTT 5 session is given (`SessionOptions`), how it says the broker refused
(`SessionRefusedError`), and the publishes it holds until their PUBACK (`PendingPublish`);
the session itself is `session.MqttSession`."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Final

from core.clients.mqtt5.codec import MAX_PACKET_ID, reason_name

# Packet ids are shared by our publishes, SUBSCRIBE and UNSUBSCRIBE (§2.2.1): two stay free
# for the latter, so a full outgoing queue never leaves a reconnect without a SUBSCRIBE id.
MAX_PENDING_PUBLISHES: Final = MAX_PACKET_ID - 2


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """Where and how to connect; see the module docstring."""

    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    subscriptions: tuple[tuple[str, int], ...] = ()
    keepalive: int = 30
    session_expiry: int = 3600
    receive_maximum: int = 2000
    clean_start: bool = False
    ssl: ssl.SSLContext | None = None
    connect_timeout: float = 10.0
    backoff_min: float = 0.25
    backoff_max: float = 10.0
    # Our own publishes held until the broker acknowledges them (in flight or waiting to be
    # sent, connected or not); one more is refused with 0x97. The bridge's resend commands
    # are rate-limited per device, so 1,000 is far above what it holds in normal operation.
    max_pending_publishes: int = 1000

    def __post_init__(self) -> None:
        if not 1 <= self.max_pending_publishes <= MAX_PENDING_PUBLISHES:
            raise ValueError(f"max_pending_publishes must be within 1..{MAX_PENDING_PUBLISHES}")


class SessionRefusedError(ConnectionError):
    """The broker answered CONNECT, SUBSCRIBE or UNSUBSCRIBE with a failure reason code (or
    the packet could not be sent within the broker's limits)."""

    def __init__(self, what: str, reason: int, detail: str | None = None) -> None:
        super().__init__(f"{what} refused: {reason_name(reason)}" + (f" ({detail})" if detail else ""))
        self.reason = reason
        self.detail = detail


class PendingPublish:
    """One of our QoS 1 publishes, held until its PUBACK."""

    __slots__ = ("payload", "retain", "sent", "topic", "waiter")

    def __init__(self, topic: bytes, payload: bytes, retain: bool, waiter: asyncio.Future[int]) -> None:
        self.topic, self.payload, self.retain, self.waiter = topic, payload, retain, waiter
        self.sent = False  # written on some connection: a resend carries DUP
