"""Rules of a consciousness check-in: who may enter one, when it may have been observed,
consent, the audit trail, and the reading it becomes.

Who: the patient for themself, or a clinician of one of the patient's care teams (a caregiver
enters it through the patient's own login today). Any other patient id answers 404, as reads
do, so that a caller cannot learn which ids exist; admin and ops accounts enter no clinical
observations (403). Every attempt is audited, never with the level itself (a health value).

The observation becomes a `ReadingBatch` of one reading, metric `consciousness`, value the
level's code (core.catalogue.ACVPU_CODES), from the virtual device `checkin:<user id>`, with
`seq` the receipt time in epoch milliseconds (the column is NOT NULL; check-ins have no device
counter). It is published to `rpm.readings.v1` keyed by patient, so the stream worker stores
it (a second check-in with the same patient and `observed_at` is dropped there: first wins)
and NEWS2 scores it, in its validity window, whatever order it arrives in (ADR 0015).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Protocol

from api.access.repository import clinician_cares_for
from api.audit import repository as audit_repository
from api.audit.schemas import AuditEvent, AuditOutcome
from api.auth.schemas import Principal
from api.checkins import repository
from api.checkins.schemas import ConsciousnessCheckIn, ConsciousnessRecorded, observed_time
from api.db import Conn
from core.catalogue import ACVPU_CODES
from core.wire import Reading, ReadingBatch

ACTION: Final = "create"
RESOURCE: Final = "observations"
METRIC: Final = "consciousness"
CHECKIN_SOURCE_PREFIX: Final = "checkin:"
# The bridge's tolerance for a device clock ahead of ours; a check-in is entered by a person,
# so a day back covers "she was confused this morning" and not much more.
MAX_AHEAD: Final = timedelta(minutes=5)
MAX_BACK: Final = timedelta(hours=24)


class Publisher(Protocol):
    async def publish(self, batch: ReadingBatch) -> None: ...


class PublishError(Exception):
    """What a publisher raises when the record was not acknowledged."""


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    detail: str


def checkin_source(principal: Principal) -> str:
    """The virtual device id of the person who entered the observation."""
    return f"{CHECKIN_SOURCE_PREFIX}{principal.user_id}"


async def _may_enter(conn: Conn, principal: Principal, patient_id: str) -> bool:
    if principal.role == "patient":
        return principal.patient_id is not None and principal.patient_id == patient_id
    if principal.role == "clinician":
        return await clinician_cares_for(conn, principal.user_id, patient_id)
    return False


def _judge_time(observed_at: datetime, now: datetime) -> Refusal | None:
    if observed_at - now > MAX_AHEAD:
        return Refusal(422, "observed_at_in_future", "observed_at is more than 5 minutes ahead of the server's clock")
    if now - observed_at > MAX_BACK:
        return Refusal(422, "observed_at_too_old", "observed_at is more than 24 hours ago; enter current observations")
    return None


async def record_consciousness(
    conn: Conn,
    publisher: Publisher,
    principal: Principal,
    patient_id: str,
    body: ConsciousnessCheckIn,
    now: datetime,
) -> ConsciousnessRecorded | Refusal:
    """Publish the check-in, or say why not; every outcome is audited in the caller's transaction."""
    observed_at = observed_time(body, now)
    source = checkin_source(principal)
    asked = {"metric": METRIC, "observed_at": observed_at.isoformat(), "source": source}

    async def audit(outcome: AuditOutcome, **detail: str) -> None:
        event = AuditEvent(
            action=ACTION,
            resource=RESOURCE,
            outcome=outcome,
            actor_id=principal.user_id,
            actor_role=principal.role,
            patient_id=patient_id,
            detail={**asked, **detail},
        )
        await audit_repository.record(conn, event)

    if principal.role not in ("patient", "clinician"):
        await audit("denied", reason="role")
        return Refusal(403, "role_not_allowed", "only the patient or a clinician of their care team enters check-ins")
    if not await _may_enter(conn, principal, patient_id):
        await audit("denied", reason="not_visible")
        return Refusal(404, "patient_not_found", f"no patient {patient_id!r} among the patients you can see")
    refusal = _judge_time(observed_at, now)
    if refusal is None and not await repository.has_consent(conn, patient_id, observed_at):
        refusal = Refusal(403, "no_consent", "the patient has no active consent to remote monitoring")
    if refusal is not None:
        await audit("denied", reason=refusal.code)
        return refusal
    code = ACVPU_CODES[body.level]
    batch = ReadingBatch(
        patient_id=patient_id,
        device_id=source,
        seq=int(now.timestamp() * 1000),
        received_at=now,
        readings=[Reading(METRIC, code, observed_at)],
    )
    try:
        await publisher.publish(batch)
    except PublishError:
        await audit("error", reason="not_published")
        return Refusal(503, "readings_unavailable", "the check-in could not be queued for storage; try again shortly")
    await audit("allowed")
    return ConsciousnessRecorded(
        patient_id=patient_id,
        level=body.level,
        value=code,
        observed_at=observed_at,
        device_id=source,
        news2_points=0 if body.level == "A" else 3,
    )
