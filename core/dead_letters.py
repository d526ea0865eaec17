"""The one way a process writes a dead letter (ARCHITECTURE.md §4, `rpm.rejected.v1`).

The bridge (a device message it refuses) and the stream worker (a record or row it gives up
on) both build their `RejectedMessage` here, so every dead letter has the same shape and caps:
the raw payload up to `MAX_PAYLOAD_BYTES` decoded with replacement (invalid UTF-8 stays
readable), its full size, and a detail that is safe to write (lone surrogates replaced) and at
most `MAX_DETAIL_CHARS` long. Sending it is each process's own: the bridge produces it with the
readings of the same message, the worker waits until Kafka acknowledges it
(`streams/dead_letters.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from core.supervision import safe_text
from core.wire import RejectedMessage, encode

MAX_PAYLOAD_BYTES: Final = 4096
MAX_DETAIL_CHARS: Final = 500
MAX_TOPIC_CHARS: Final = 256
INTERNAL_ERROR: Final = "internal_error"


def payload_text(payload: bytes | str | None) -> str:
    """The payload as it goes into a dead letter: capped, decoded with replacement."""
    if payload is None:
        return ""
    if isinstance(payload, bytes):
        return payload[:MAX_PAYLOAD_BYTES].decode("utf-8", "replace")
    return safe_text(payload[:MAX_PAYLOAD_BYTES])


def dead_letter(
    reason: str,
    detail: str,
    payload: bytes | str | None,
    *,
    topic: str,
    device_id: str | None = None,
    received_at: datetime | None = None,
) -> bytes:
    """An encoded `RejectedMessage` for a message of `topic` that was refused or given up on."""
    return encode(
        RejectedMessage(
            reason=str(reason),
            detail=safe_text(detail[:MAX_DETAIL_CHARS]),
            topic=safe_text(topic[:MAX_TOPIC_CHARS]),
            device_id=device_id,
            received_at=received_at or datetime.now(UTC),
            payload=payload_text(payload),
            payload_size=len(payload) if payload is not None else 0,
        )
    )


__all__ = ["INTERNAL_ERROR", "MAX_DETAIL_CHARS", "MAX_PAYLOAD_BYTES", "dead_letter", "payload_text"]
