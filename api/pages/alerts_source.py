"""What the inbox page needs of the alerts service (api/alerts), in the page's own terms: the
alerts for the page's filters, and a person's move that answers None or (status, words)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final

from pydantic import ValidationError

from api.alerts import service
from api.alerts.schemas import (
    UNRESOLVED,
    AcknowledgeBody,
    AlertDetail,
    AlertRead,
    InboxQuery,
    ResolveBody,
    Severity,
    SnoozeBody,
    State,
)
from api.auth.schemas import Principal
from api.db import Conn

PAGE_SIZE: Final = 100
STATE_FILTERS: Final[dict[str, tuple[State, ...]]] = {
    "unresolved": UNRESOLVED,
    "open": ("open",),
    "acknowledged": ("acknowledged",),
    "snoozed": ("snoozed",),
    "resolved": ("resolved",),
}
SEVERITY_FILTERS: Final[dict[str, tuple[Severity, ...]]] = {
    "any": (),
    "critical": ("critical",),
    "high": ("high",),
    "medium": ("medium",),
    "low": ("low",),
    "info": ("info",),
}
NOT_FOUND: Final = "This alert is not among the alerts of your patients. Nothing was changed."


def sentence(detail: str) -> str:
    return detail[:1].upper() + detail[1:] + ("" if detail.endswith(".") else ".")


async def inbox(conn: Conn, principal: Principal, state: str, severity: str) -> tuple[list[AlertRead], bool]:
    """The first PAGE_SIZE alerts, most severe first and then oldest first; whether more match."""
    query = InboxQuery(
        states=STATE_FILTERS.get(state, UNRESOLVED),
        severities=SEVERITY_FILTERS.get(severity, ()),
        sort="severity",
        limit=PAGE_SIZE,
    )
    page = await service.list_alerts(conn, principal, query)
    if isinstance(page, service.Refusal):
        return [], False
    return page.items, page.next_cursor is not None


async def one(conn: Conn, principal: Principal, alert_id: str) -> AlertDetail | None:
    """The alert with its history (audited by the service); None when it is not the caller's to see."""
    try:
        key = uuid.UUID(alert_id)
    except ValueError:
        return None
    found = await service.read_alert(conn, principal, key)
    return None if isinstance(found, service.Refusal) else found


async def transition(
    conn: Conn,
    principal: Principal,
    alert_id: str,
    action: str,
    *,
    minutes: int | None,
    disposition: str | None,
    note: str | None,
    now: datetime,
) -> tuple[int, str] | None:
    """Acknowledge, snooze or resolve through the service; None when done, else the refusal in words."""
    try:
        key = uuid.UUID(alert_id)
    except ValueError:
        return 404, NOT_FOUND
    move: AcknowledgeBody | SnoozeBody | ResolveBody
    verb: service.Action
    try:
        if action == "acknowledge":
            move, verb = AcknowledgeBody(note=note), "acknowledge"
        elif action == "snooze":
            move, verb = SnoozeBody(minutes=minutes, note=note), "snooze"
        else:
            move, verb = ResolveBody.model_validate({"disposition": disposition, "note": note}), "resolve"
    except ValidationError:
        return (
            422,
            "Nothing was changed: the form's values are not ones the inbox accepts. Reload the page and try again.",
        )
    done = await service.act(conn, principal, key, verb, move, now)
    if not isinstance(done, service.Refusal):
        return None
    if done.status == 404:
        return 404, NOT_FOUND
    if done.status == 409:
        return 409, f"Nothing was changed: {sentence(done.detail)} Someone may have acted on it meanwhile."
    return done.status, f"Nothing was changed: {sentence(done.detail)}"
