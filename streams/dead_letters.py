"""Dead letters of the worker: what an agent could not process goes to `rpm.rejected.v1`
with a reason code and the error, never silently dropped (CONVENTIONS.md)."""

from __future__ import annotations

from datetime import UTC, datetime

from core.wire import READINGS, RejectedMessage, encode

MAX_PAYLOAD_CHARS = 4096


def dead_letter(reason: str, detail: str, payload: str, *, topic: str = READINGS.name) -> bytes:
    """An encoded `RejectedMessage` for a record (or row) of `topic` the worker gave up on."""
    return encode(
        RejectedMessage(
            reason=reason,
            detail=detail[:500],
            topic=topic,
            device_id=None,
            received_at=datetime.now(UTC),
            payload=payload[:MAX_PAYLOAD_CHARS],
            payload_size=len(payload),
        )
    )
