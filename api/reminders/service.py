"""Rules of a patient's reminders and profile (ADR 0026).

- Only a signed-in patient has these routes, and they answer the caller's own record: there
  is no patient id to ask for. Any other role gets 403 `not_a_patient` (audited as denied).
  Marking a reminder seen names a reminder id: one of another patient is 404, exactly like one
  that does not exist.
- Each call writes one audit event: the read of the reminders (they tell when readings were
  due and came, so health data), the read and the change of the profile (the fields changed
  are named, their values are not).
- Reminders are planned, sent and settled by the alert service (alerts/reminders); the API
  only reads them and keeps the patient's choices, which the alert service reads each round.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from api.audit import repository as audit_repository
from api.audit.schemas import AuditEvent, AuditOutcome
from api.auth.schemas import Principal
from api.db import Conn
from api.portal.text import catalogue, t
from api.reminders import repository
from api.reminders.repository import PreferencesRow, ReminderRow
from api.reminders.schemas import (
    MAX_REMINDERS,
    Channel,
    ProfileRead,
    ProfileUpdate,
    ReminderList,
    ReminderQuery,
    ReminderRead,
)

REMINDERS_RESOURCE: Final = "reminders"
PROFILE_RESOURCE: Final = "profile"
DEFAULT_CHANNELS: Final[list[Channel]] = ["in_app"]


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    detail: str


async def _audit(
    conn: Conn, principal: Principal, action: str, resource: str, outcome: AuditOutcome, **detail: Any
) -> None:
    await audit_repository.record(
        conn,
        AuditEvent(
            action=action,
            resource=resource,
            outcome=outcome,
            actor_id=principal.user_id,
            actor_role=principal.role,
            patient_id=principal.patient_id if principal.role == "patient" else None,
            detail={"client_ip": principal.client_ip, "session_id": principal.session_id, **detail},
        ),
    )


async def _patient(conn: Conn, principal: Principal, action: str, resource: str) -> str | Refusal:
    if principal.role != "patient" or principal.patient_id is None:
        await _audit(conn, principal, action, resource, "denied", reason="role")
        return Refusal(403, "not_a_patient", "only a patient has reminders and a profile of their own")
    return principal.patient_id


def what_of(kind: str, metric: str) -> str:
    if kind == "dose":
        return t("reminders.what.dose")
    msg_id = f"reminders.what.{metric}"
    return t(msg_id) if msg_id in catalogue() else t("reminders.what.other")


def outcome_text(state: str, outcome: str | None) -> str:
    msg_id = f"reminders.outcome.{outcome or state}"
    return t(msg_id) if msg_id in catalogue() else t("reminders.outcome.sent")


def reminder_read(row: ReminderRow) -> ReminderRead:
    return ReminderRead(
        id=row.id,
        kind="dose" if row.kind == "dose" else "measurement",
        metric=row.metric,
        dose_id=row.dose_id,
        what=what_of(row.kind, row.metric),
        channel="email" if row.channel == "email" else "in_app",
        follow_up=row.follow_up,
        scheduled_at=row.scheduled_at,
        window_end=row.window_end,
        due_at=row.due_at,
        state=_state(row.state),
        outcome=row.outcome,
        outcome_text=outcome_text(row.state, row.outcome),
        sent_at=row.sent_at,
        seen_at=row.seen_at,
    )


def _state(value: str) -> Literal["queued", "sent", "cancelled", "skipped"]:
    if value == "sent":
        return "sent"
    if value == "cancelled":
        return "cancelled"
    if value == "skipped":
        return "skipped"
    return "queued"


async def list_reminders(
    conn: Conn, principal: Principal, query: ReminderQuery, now: datetime
) -> ReminderList | Refusal:
    patient = await _patient(conn, principal, "read", REMINDERS_RESOURCE)
    if isinstance(patient, Refusal):
        return patient
    pending, recent = await repository.reminders(
        conn, patient, now - timedelta(days=query.days), query.channel, MAX_REMINDERS
    )
    await _audit(
        conn,
        principal,
        "read",
        REMINDERS_RESOURCE,
        "allowed",
        days=query.days,
        channel=query.channel,
        returned=len(pending) + len(recent),
    )
    return ReminderList(pending=[reminder_read(r) for r in pending], recent=[reminder_read(r) for r in recent])


async def mark_seen(conn: Conn, principal: Principal, reminder_id: int, now: datetime) -> ReminderRead | Refusal:
    patient = await _patient(conn, principal, "update", "reminder")
    if isinstance(patient, Refusal):
        return patient
    row = await repository.mark_seen(conn, patient, reminder_id, now)
    if row is None:
        await _audit(conn, principal, "update", "reminder", "denied", reason="not_found", reminder_id=reminder_id)
        return Refusal(404, "reminder_not_found", f"no sent reminder {reminder_id} of yours")
    await _audit(conn, principal, "update", "reminder", "allowed", reminder_id=reminder_id, change="seen")
    return reminder_read(row)


def profile_read(row: PreferencesRow | None, plan_zone: str | None) -> ProfileRead:
    if row is None:
        return ProfileRead(
            email=None,
            channels=list(DEFAULT_CHANNELS),
            quiet_start=None,
            quiet_end=None,
            time_zone=None,
            effective_time_zone=plan_zone or "UTC",
            updated_at=None,
        )
    channels: list[Channel] = [c for c in ("in_app", "email") if c in row.channels]
    return ProfileRead(
        email=row.email,
        channels=channels,
        quiet_start=row.quiet_start,
        quiet_end=row.quiet_end,
        time_zone=row.time_zone,
        effective_time_zone=row.time_zone or plan_zone or "UTC",
        updated_at=row.updated_at,
    )


async def read_profile(conn: Conn, principal: Principal) -> ProfileRead | Refusal:
    patient = await _patient(conn, principal, "read", PROFILE_RESOURCE)
    if isinstance(patient, Refusal):
        return patient
    row = await repository.preferences(conn, patient)
    zone = await repository.plan_zone(conn, patient)
    await _audit(conn, principal, "read", PROFILE_RESOURCE, "allowed")
    return profile_read(row, zone)


async def update_profile(conn: Conn, principal: Principal, body: ProfileUpdate, now: datetime) -> ProfileRead | Refusal:
    patient = await _patient(conn, principal, "update", PROFILE_RESOURCE)
    if isinstance(patient, Refusal):
        return patient
    before = profile_read(await repository.preferences(conn, patient), None)
    row = await repository.save_preferences(
        conn,
        patient,
        email=body.email,
        channels=[c for c in ("in_app", "email") if c in body.channels],
        quiet_start=body.quiet_start,
        quiet_end=body.quiet_end,
        time_zone=body.time_zone,
        now=now,
    )
    changed = [
        name
        for name in ("email", "channels", "quiet_start", "quiet_end", "time_zone")
        if getattr(before, name) != getattr(profile_read(row, None), name)
    ]
    await _audit(conn, principal, "update", PROFILE_RESOURCE, "allowed", changed=changed)
    return profile_read(row, await repository.plan_zone(conn, patient))
