"""Rules of the clinician's alerts: who sees which alert, the inbox, a person's moves on an
alert (the pure transitions of core.alert_lifecycle, with the server's clock), the precision
figures, and the audit event of every request (denied ones included).

- Inbox and figures: clinicians (the patients of their care teams) and admins (every
  patient); any other role gets 403.
- An alert by id: whoever may see its patient (api.access: care team, admin, break-glass)
  and is a clinician or an admin; anyone else, and any id that does not exist, gets 404.
  Moves need the care team (or admin): a clinician reading under break-glass gets 403.
- A move is one transaction: the alert row locked (FOR UPDATE), the transition applied, the
  row and its history written, and on acknowledge, snooze and resolve what is still queued
  for it on every channel cancelled (CANCEL_QUEUED_SQL), so that no e-mail or webhook goes
  out for an alert a person has taken. Input a user can fix answers 422; a move the state
  does not allow answers 409 in words.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import Any, Final, Literal

from api.access.service import patient_access
from api.alerts import repository
from api.alerts.schemas import (
    AcknowledgeBody,
    AlertDetail,
    AlertPage,
    AssignBody,
    InboxQuery,
    NoteBody,
    PrecisionRead,
    ResolveBody,
    RulePrecision,
    SnoozeBody,
    encode_cursor,
)
from api.alerts.stream import StreamScope
from api.audit import repository as audit_repository
from api.audit.schemas import AuditEvent, AuditOutcome
from api.auth.schemas import Principal
from api.db import Conn
from api.metrics import observe_acknowledged
from core import alert_lifecycle as lifecycle

RESOURCE: Final = "alert"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
INBOX_ROLES: Final = frozenset({"clinician", "admin"})
Action = Literal["acknowledge", "assign", "snooze", "resolve", "note"]
Move = AcknowledgeBody | AssignBody | SnoozeBody | ResolveBody | NoteBody


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    detail: str


def etag(updated_at: datetime) -> str:
    """The alert's version as an ETag: its `updated_at` in microseconds (every move sets it)."""
    return f'"{(updated_at - _EPOCH) // timedelta(microseconds=1)}"'


def etag_matches(if_match: str, updated_at: datetime) -> bool:
    wanted = etag(updated_at)
    return any(tag.strip().removeprefix("W/") in (wanted, "*") for tag in if_match.split(","))


class _Audit:
    def __init__(self, conn: Conn, principal: Principal, action: str, **detail: Any) -> None:
        self.conn, self.principal, self.action, self.detail = conn, principal, action, detail

    async def __call__(self, outcome: AuditOutcome, patient_id: str | None = None, **detail: Any) -> None:
        await audit_repository.record(
            self.conn,
            AuditEvent(
                action=self.action,
                resource=RESOURCE,
                outcome=outcome,
                actor_id=self.principal.user_id,
                actor_role=self.principal.role,
                patient_id=patient_id,
                detail={
                    "client_ip": self.principal.client_ip,
                    "session_id": self.principal.session_id,
                    **self.detail,
                    **detail,
                },
            ),
        )


def scope_of(principal: Principal) -> uuid.UUID | None:
    """The scope argument of the repository: a clinician's id, None for an admin."""
    return None if principal.role == "admin" else principal.user_id


def _not_found(alert_id: uuid.UUID) -> Refusal:
    return Refusal(404, "alert_not_found", f"no alert {str(alert_id)!r} among the alerts you can see")


_ROLE_REFUSAL: Final = Refusal(403, "clinicians_only", "the alert inbox is for clinicians and admins")


def parse_assignee(value: str | None, principal: Principal) -> uuid.UUID | Literal["none"] | Refusal | None:
    """`me`, `none` (unassigned) or a user id."""
    if value is None:
        return None
    if value == "me":
        return principal.user_id
    if value == "none":
        return "none"
    try:
        return uuid.UUID(value)
    except ValueError:
        return Refusal(422, "invalid_assignee", "assignee must be 'me', 'none' or a user id")


async def refuse(conn: Conn, principal: Principal, action: str, refusal: Refusal, **detail: Any) -> None:
    """Audit a request refused before the service's own checks (a filter or cursor to fix)."""
    await _Audit(conn, principal, action, **detail)("denied", reason=refusal.code)


async def list_alerts(conn: Conn, principal: Principal, query: InboxQuery) -> AlertPage | Refusal:
    """One page of the caller's inbox; one audit event either way."""
    asked: dict[str, Any] = {
        "states": list(query.states),
        "severities": list(query.severities),
        "rule": query.rule,
        "assignee": None if query.assignee is None else str(query.assignee),
        "sort": query.sort,
        "limit": query.limit,
        "after": query.after is not None,
    }
    audit = _Audit(conn, principal, "list", **asked)
    if principal.role not in INBOX_ROLES:
        await audit("denied", query.patient_id, reason="role")
        return _ROLE_REFUSAL
    rows = await repository.list_alerts(conn, scope_of(principal), query, query.limit + 1)
    items = rows[: query.limit]
    more = len(rows) > query.limit
    next_cursor = encode_cursor(repository.cursor_of(items[-1], query.sort)) if more and items else None
    await audit("allowed", query.patient_id, returned=len(items), patients=sorted({a.patient_id for a in items}))
    return AlertPage(items=[repository.alert_read(a) for a in items], next_cursor=next_cursor)


async def _reach(
    conn: Conn, principal: Principal, alert_id: uuid.UUID, audit: _Audit, *, change: bool
) -> str | Refusal:
    """The alert's patient when the caller may see (and for a move, change) the alert."""
    if principal.role not in INBOX_ROLES:
        await audit("denied", reason="role")
        return _not_found(alert_id)
    patient_id = await repository.alert_patient(conn, alert_id)
    if patient_id is None:
        await audit("denied", reason="not_found")
        return _not_found(alert_id)
    access = await patient_access(conn, principal, patient_id)
    if not access.allowed:
        await audit("denied", patient_id, reason="not_visible")
        return _not_found(alert_id)
    if change and not access.care_team:
        await audit("denied", patient_id, reason="not_care_team")
        return Refusal(403, "care_team_only", "only a clinician of the patient's care team or an admin may do this")
    return patient_id


async def read_alert(conn: Conn, principal: Principal, alert_id: uuid.UUID) -> AlertDetail | Refusal:
    audit = _Audit(conn, principal, "read", alert_id=str(alert_id))
    reached = await _reach(conn, principal, alert_id, audit, change=False)
    if isinstance(reached, Refusal):
        return reached
    alert = await repository.get_alert(conn, alert_id)
    assert alert is not None  # alerts are never deleted
    await audit("allowed", reached)
    return await _detail(conn, alert)


async def _detail(conn: Conn, alert: lifecycle.Alert) -> AlertDetail:
    read = repository.alert_read(alert)
    return AlertDetail(**read.model_dump(), history=await repository.history(conn, uuid.UUID(alert.id)))


def _check_input(move: Move, now: datetime) -> Refusal | None:
    """What the user can fix in the body (422), before the alert's state is looked at."""
    if isinstance(move, SnoozeBody):
        until = _snooze_until(move, now)
        if until <= now:
            return Refusal(422, "invalid_snooze", "a snooze must end in the future")
        if until - now > lifecycle.MAX_SNOOZE:
            return Refusal(422, "invalid_snooze", "a snooze may last at most 24 hours")
    if isinstance(move, ResolveBody) and move.disposition == "other" and not (move.note or "").strip():
        return Refusal(422, "note_required", "the disposition 'other' needs a note saying what it was")
    if isinstance(move, NoteBody) and not move.note.strip():
        return Refusal(422, "note_required", "a note needs text")
    return None


def _snooze_until(move: SnoozeBody, now: datetime) -> datetime:
    return move.until if move.until is not None else now + timedelta(minutes=move.minutes or 0)


def _transition(alert: lifecycle.Alert, move: Move, actor: str, now: datetime) -> lifecycle.Transition:
    if isinstance(move, AcknowledgeBody):
        done = lifecycle.acknowledge(alert, actor, now)
    elif isinstance(move, AssignBody):
        done = lifecycle.assign(alert, None if move.assignee is None else str(move.assignee), actor, now)
    elif isinstance(move, SnoozeBody):
        done = lifecycle.snooze(alert, _snooze_until(move, now), now, actor)
    elif isinstance(move, ResolveBody):
        return lifecycle.resolve(alert, move.disposition, move.note, actor, now)
    else:
        return lifecycle.add_note(alert, move.note, actor, now)
    note = getattr(move, "note", None)
    if note and note.strip():
        # The why of an acknowledgement or snooze, kept on its history row.
        done = replace(done, events=tuple(replace(e, note=note) for e in done.events))
    return done


async def act(
    conn: Conn,
    principal: Principal,
    alert_id: uuid.UUID,
    action: Action,
    move: Move,
    now: datetime,
    if_match: str | None = None,
) -> AlertDetail | Refusal:
    """A person's move on an alert, in the caller's transaction; one audit event either way.
    With `if_match` (the ETag of the alert as read), a move on an alert changed since is 412."""
    audit = _Audit(conn, principal, action, alert_id=str(alert_id))
    reached = await _reach(conn, principal, alert_id, audit, change=True)
    if isinstance(reached, Refusal):
        return reached
    refused = _check_input(move, now)
    if (
        refused is None
        and isinstance(move, AssignBody)
        and move.assignee is not None
        and not await repository.is_team_member(conn, reached, move.assignee)
    ):
        refused = Refusal(422, "assignee_not_in_care_team", "the assignee is not of the patient's care team")
    if refused is not None:
        await audit("denied", reached, reason=refused.code)
        return refused
    alert = await repository.get_alert(conn, alert_id, lock=True)
    assert alert is not None
    if if_match is not None and not etag_matches(if_match, alert.updated_at):
        await audit("denied", reached, reason="stale", state=alert.state)
        return Refusal(
            412, "precondition_failed", f"the alert changed since it was read (it is {alert.state} now); read it again"
        )
    try:
        done = _transition(alert, move, str(principal.user_id), now)
    except lifecycle.TransitionError as exc:
        await audit("denied", reached, reason="invalid_transition", state=alert.state)
        return Refusal(409, "invalid_transition", str(exc))
    await repository.update_alert(conn, done.alert)
    await repository.insert_events(conn, done.alert, done.events)
    cancelled = await repository.cancel_queued(conn, alert.id) if done.cancel_queued else 0
    await audit("allowed", reached, from_state=alert.state, to_state=done.alert.state, cancelled=cancelled)
    if isinstance(move, AcknowledgeBody):
        # Counted as the transaction ends (the caller commits it straight after).
        observe_acknowledged(
            done.alert.rule, str(done.alert.severity), done.alert.opened_at, done.alert.acknowledged_at
        )
    return await _detail(conn, done.alert)


async def figures(conn: Conn, principal: Principal, days: int, now: datetime) -> PrecisionRead | Refusal:
    """Precision per rule and alerts per patient-day over the last `days` days, in scope."""
    audit = _Audit(conn, principal, "figures", days=days)
    if principal.role not in INBOX_ROLES:
        await audit("denied", reason="role")
        return _ROLE_REFUSAL
    since = now - timedelta(days=days)
    scope = scope_of(principal)
    per_rule: dict[str, list[str]] = {}
    for rule, disposition, count in await repository.dispositions_by_rule(conn, scope, since):
        per_rule.setdefault(rule, []).extend(repeat(disposition, count))
    rules = [
        RulePrecision(
            rule=rule,
            resolved_by_person=sum(1 for d in found if d in lifecycle.PERSON_DISPOSITIONS),
            actionable=sum(1 for d in found if d == "actionable"),
            precision=lifecycle.precision(found),
        )
        for rule, found in sorted(per_rule.items())
    ]
    opened, patients = await repository.opened_and_patients(conn, scope, since)
    await audit("allowed")
    return PrecisionRead(
        days=days,
        since=since,
        rules=rules,
        alerts_opened=opened,
        patients=patients,
        alerts_per_patient_day=lifecycle.alerts_per_patient_day(opened, patients, days),
    )


async def open_stream(conn: Conn, principal: Principal, last_event_id: int | None) -> StreamScope | Refusal:
    """Whose events the caller's stream may carry; one audit event for the stream's opening
    (the events it then carries are the history rows of alerts the caller may read)."""
    audit = _Audit(conn, principal, "stream", last_event_id=last_event_id)
    if principal.role not in INBOX_ROLES:
        await audit("denied", reason="role")
        return _ROLE_REFUSAL
    await audit("allowed")
    return StreamScope(scope_of(principal))
