"""Rules of "who viewed my record" (ADR 0025).

- A patient reads the audit events about their own record, in plain words (api/accesslog/words.py),
  their own actions left out unless asked for; reading the log is itself one audit event.
- A patient flags an event of their own record they do not recognise; any other event id is
  404, exactly like one that does not exist. One open flag per event.
- Admins (the privacy officer) read the queue of flags and review each one with an outcome note
  that the patient then sees on their log. Every call is audited once, refusals too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from api.accesslog import repository, words
from api.accesslog.repository import EventRow, FlagRow, QueueRow
from api.accesslog.schemas import (
    AccessLogEntry,
    AccessLogPage,
    AccessLogQuery,
    Actor,
    FlaggedEvent,
    FlagRead,
    FlagRequest,
    PrivacyFlagPage,
    PrivacyFlagQuery,
    PrivacyFlagRead,
    ReviewRequest,
    encode_queue_cursor,
)
from api.admin.schemas import encode_cursor
from api.audit import repository as audit_repository
from api.audit.schemas import AuditEvent, AuditOutcome
from api.auth.schemas import Principal
from api.db import Conn

LOG_RESOURCE: Final = "access_log"
FLAG_RESOURCE: Final = "privacy_flag"
QUEUE_RESOURCE: Final = "privacy_flags"


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    detail: str


async def _audit(
    conn: Conn,
    principal: Principal,
    action: str,
    resource: str,
    patient_id: str | None,
    outcome: AuditOutcome,
    **detail: Any,
) -> None:
    await audit_repository.record(
        conn,
        AuditEvent(
            action=action,
            resource=resource,
            outcome=outcome,
            actor_id=principal.user_id,
            actor_role=principal.role,
            patient_id=patient_id,
            detail={"client_ip": principal.client_ip, "session_id": principal.session_id, **detail},
        ),
    )


def _not_a_patient() -> Refusal:
    return Refusal(403, "role_not_allowed", "only a patient has an access log, of their own record")


def _not_found(event_id: int) -> Refusal:
    # 404 for another patient's event as for none at all: ids of other records stay unknown.
    return Refusal(404, "access_event_not_found", f"no access {event_id} in your record")


def _flag_read(row: FlagRow | EventRow) -> FlagRead | None:
    if isinstance(row, EventRow):
        if row.flag_id is None or row.flag_state is None or row.flagged_at is None:
            return None
        return FlagRead.model_validate(
            {
                "id": row.flag_id,
                "state": row.flag_state,
                "flagged_at": row.flagged_at,
                "reviewed_at": row.reviewed_at,
                "outcome_note": row.outcome_note,
            }
        )
    return FlagRead.model_validate(
        {
            "id": row.id,
            "state": row.state,
            "flagged_at": row.flagged_at,
            "reviewed_at": row.reviewed_at,
            "outcome_note": row.outcome_note,
        }
    )


def entry_of(row: EventRow, principal: Principal) -> AccessLogEntry:
    """One event in the patient's words."""
    is_me = row.actor_id is not None and row.actor_id == principal.user_id
    name = words.who_name(is_me=is_me, role=row.actor_role, display_name=row.actor_name)
    did = words.did_words(row.action, row.resource)
    what = words.what_words(row.resource, row.detail)
    outcome = row.outcome if row.outcome in ("allowed", "denied", "error") else "error"
    return AccessLogEntry.model_validate(
        {
            "id": row.id,
            "at": row.at,
            "who": Actor(name=name, role=row.actor_role, role_words=words.role_words(row.actor_role), is_me=is_me),
            "action": row.action,
            "resource": row.resource,
            "did": did,
            "what": what,
            "sentence": words.sentence(name, row.actor_role, is_me=is_me, did=did, what=what, outcome=outcome),
            "outcome": outcome,
            "outcome_words": words.outcome_words(outcome),
            "break_glass": row.break_glass,
            "break_glass_reason": row.break_glass_reason if row.break_glass else None,
            "flag": _flag_read(row),
        }
    )


async def read_log(conn: Conn, principal: Principal, query: AccessLogQuery) -> AccessLogPage | Refusal:
    asked: dict[str, object] = {
        k: (v if isinstance(v, int | bool) else str(v))
        for k, v in query.model_dump(exclude={"cursor"}).items()
        if v is not None
    }
    if query.cursor is not None:
        asked["paged"] = True
    if principal.role != "patient" or principal.patient_id is None:
        await _audit(conn, principal, "read", LOG_RESOURCE, None, "denied", reason="role", **asked)
        return _not_a_patient()
    rows = await repository.patient_events(conn, principal.patient_id, principal.user_id, query, query.limit + 1)
    items = rows[: query.limit]
    next_cursor = encode_cursor(items[-1].at, items[-1].id) if len(rows) > query.limit else None
    await _audit(conn, principal, "read", LOG_RESOURCE, principal.patient_id, "allowed", returned=len(items), **asked)
    return AccessLogPage(items=[entry_of(row, principal) for row in items], next_cursor=next_cursor)


async def flag_event(
    conn: Conn, principal: Principal, event_id: int, body: FlagRequest
) -> tuple[FlagRead, bool] | Refusal:
    """The patient's open flag on the event and whether this call opened it."""
    if principal.role != "patient" or principal.patient_id is None:
        await _audit(conn, principal, "create", FLAG_RESOURCE, None, "denied", reason="role", audit_event_id=event_id)
        return _not_a_patient()
    patient_id = principal.patient_id
    if not await repository.event_of_patient(conn, event_id, patient_id):
        # Not recorded against this patient: the event may be another patient's.
        await _audit(
            conn, principal, "create", FLAG_RESOURCE, None, "denied", reason="not_found", audit_event_id=event_id
        )
        return _not_found(event_id)
    flag, created = await repository.open_flag(conn, event_id, patient_id, body.note)
    await _audit(
        conn,
        principal,
        "create",
        FLAG_RESOURCE,
        patient_id,
        "allowed",
        audit_event_id=event_id,
        flag_id=flag.id,
        created=created,
        with_note=body.note is not None,
    )
    read = _flag_read(flag)
    assert read is not None
    return read, created


def _queue_item(row: QueueRow) -> PrivacyFlagRead:
    return PrivacyFlagRead.model_validate(
        {
            "id": row.id,
            "patient_id": row.patient_id,
            "note": row.note,
            "flagged_at": row.flagged_at,
            "state": row.state,
            "reviewed_by": str(row.reviewed_by) if row.reviewed_by else None,
            "reviewed_at": row.reviewed_at,
            "outcome_note": row.outcome_note,
            "event": FlaggedEvent.model_validate(
                {
                    "id": row.event_id,
                    "at": row.event_at,
                    "actor_id": str(row.actor_id) if row.actor_id else None,
                    "actor_name": row.actor_name,
                    "actor_role": row.actor_role,
                    "action": row.action,
                    "resource": row.resource,
                    "outcome": row.outcome,
                    "break_glass": row.break_glass,
                    "break_glass_reason": row.break_glass_reason if row.break_glass else None,
                }
            ),
        }
    )


def _not_admin() -> Refusal:
    return Refusal(403, "role_not_allowed", "only admins (the privacy officer) handle privacy flags")


async def flag_queue(conn: Conn, principal: Principal, query: PrivacyFlagQuery) -> PrivacyFlagPage | Refusal:
    asked: dict[str, object] = {"limit": query.limit}
    if query.state is not None:
        asked["state"] = query.state
    if principal.role != "admin":
        await _audit(conn, principal, "read", QUEUE_RESOURCE, None, "denied", reason="role", **asked)
        return _not_admin()
    rows = await repository.flag_queue(conn, query, query.limit + 1)
    items = rows[: query.limit]
    last = items[-1] if items else None
    next_cursor = (
        encode_queue_cursor(last.rank, last.flagged_at, last.id)
        if last is not None and len(rows) > query.limit
        else None
    )
    # One event for the page (it names several patients' flags): which flags went out.
    await _audit(
        conn, principal, "read", QUEUE_RESOURCE, None, "allowed", returned=len(items), flag_ids=[r.id for r in items]
    )
    return PrivacyFlagPage(items=[_queue_item(r) for r in items], next_cursor=next_cursor)


async def review_flag(conn: Conn, principal: Principal, flag_id: int, body: ReviewRequest) -> PrivacyFlagRead | Refusal:
    if principal.role != "admin":
        await _audit(conn, principal, "review", FLAG_RESOURCE, None, "denied", reason="role", flag_id=flag_id)
        return _not_admin()
    found = await repository.flag_by_id(conn, flag_id)
    if found is None:
        await _audit(conn, principal, "review", FLAG_RESOURCE, None, "denied", reason="not_found", flag_id=flag_id)
        return Refusal(404, "privacy_flag_not_found", f"no privacy flag {flag_id}")
    if not await repository.review_flag(conn, flag_id, principal.user_id, body.outcome_note):
        await _audit(
            conn,
            principal,
            "review",
            FLAG_RESOURCE,
            found.patient_id,
            "denied",
            reason="already_reviewed",
            flag_id=flag_id,
        )
        return Refusal(409, "privacy_flag_already_reviewed", f"privacy flag {flag_id} was reviewed already")
    await _audit(
        conn,
        principal,
        "review",
        FLAG_RESOURCE,
        found.patient_id,
        "allowed",
        flag_id=flag_id,
        audit_event_id=found.event_id,
    )
    reviewed = await repository.flag_by_id(conn, flag_id)
    assert reviewed is not None
    return _queue_item(reviewed)
