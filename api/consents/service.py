"""Rules of consent in tiers (ADR 0024).

Tiers and their documents: `collect` (collect monitoring data; stored under the scope
'remote_monitoring', which the bridge's registry, check-ins, the simulator and the demo read),
`share_care_team` and `research`. A grant names the document version the patient agreed to,
and a give must name the tier's current version. Giving opens a new grant; withdrawing
closes the open one; nothing else changes a grant, so the history is every grant ever made.

What a withdrawal does today:
- `collect`: the bridge judges every reading against the consent at its receipt time, from a
  registry snapshot it reloads every `RPM_REGISTRY_REFRESH_S` (5 s by default); readings
  received after the withdrawal are dead-lettered `no_consent` once the bridge has reloaded,
  that is within COLLECT_STOP_WITHIN_S. Check-ins are refused at once (api.checkins). Stored
  readings stay.
- `share_care_team`: the care team stops seeing the patient: api.access.service.patient_access
  answers "no" to their clinicians (break-glass still works), and the patient leaves their
  inbox, my patients, the alert stream and notifications. The rule has one home, the view
  `care_team_patients_shared` (migration 0015), which every care-team query reads. A patient
  who never recorded a choice on this tier shares (enrolment agreed to it): the tier reads
  `given` with no document version, since they joined; withdrawing it records that enrolment
  grant (no version, from when they joined) and closes it.
- `research`: recorded; nothing uses data for research today.

Who: a patient gives and withdraws their own consents only (`/me`); a patient, a clinician of
their care team (or with break-glass) and an admin read them; any other id is 404. Every call
writes one audit event in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from api.access.service import patient_access
from api.audit import repository as audit_repository
from api.audit.schemas import AuditEvent, AuditOutcome
from api.auth.schemas import Principal
from api.consents import repository
from api.consents.repository import Grant
from api.consents.schemas import ConsentChange, ConsentEvent, ConsentsRead, ConsentTierRead, Tier, TierState
from api.db import Conn

RESOURCE: Final = "consents"
# The promise to patients: the bridge's registry reload (5 s by default, RPM_REGISTRY_REFRESH_S)
# plus one reload, with room to spare. Keep RPM_REGISTRY_REFRESH_S at 5 s or less.
COLLECT_STOP_WITHIN_S: Final = 10


@dataclass(frozen=True, slots=True)
class TierSpec:
    scope: str  # consents.scope
    current_version: str  # the document a new grant agrees to (texts in api/portal/text_consent.py)
    enforced: bool


TIERS: Final[dict[Tier, TierSpec]] = {
    "collect": TierSpec("remote_monitoring", "collect-v1", enforced=True),
    "share_care_team": TierSpec("share_care_team", "share_care_team-v1", enforced=True),
    "research": TierSpec("research", "research-v1", enforced=False),
}
_TIER_OF_SCOPE: Final = {spec.scope: tier for tier, spec in TIERS.items()}
# Tiers agreed to at enrolment when nothing was recorded on them (the view of migration 0015
# holds the same rule for sharing).
_GIVEN_AT_ENROLMENT: Final[frozenset[Tier]] = frozenset({"share_care_team"})


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    detail: str


def consents_of(patient_id: str, grants: list[Grant]) -> ConsentsRead:
    """Each tier now and the history, from the patient's grants."""
    tiers: list[ConsentTierRead] = []
    for tier, spec in TIERS.items():
        rows = [g for g in grants if g.scope == spec.scope]
        open_rows = [g for g in rows if g.withdrawn_at is None]
        state: TierState = "not_given"
        version: str | None = None
        since: datetime | None = None
        if open_rows:
            state, version, since = "given", open_rows[-1].document_version, open_rows[-1].granted_at
        elif rows:
            last = max(rows, key=lambda g: (g.withdrawn_at or g.granted_at, g.id))
            state, version, since = "withdrawn", last.document_version, last.withdrawn_at
        elif tier in _GIVEN_AT_ENROLMENT:
            state, since = "given", joined(grants)
        tiers.append(
            ConsentTierRead(
                tier=tier,
                state=state,
                document_version=version,
                since=since,
                current_document_version=spec.current_version,
                enforced=spec.enforced,
            )
        )
    events: list[tuple[tuple[datetime, int, int], ConsentEvent]] = []
    for g in grants:
        tier_of = _TIER_OF_SCOPE.get(g.scope)
        if tier_of is None:
            continue
        given = ConsentEvent(
            grant_id=g.id, tier=tier_of, action="given", at=g.granted_at, document_version=g.document_version
        )
        events.append(((g.granted_at, g.id, 0), given))
        if g.withdrawn_at is not None:
            withdrawn = ConsentEvent(
                grant_id=g.id, tier=tier_of, action="withdrawn", at=g.withdrawn_at, document_version=g.document_version
            )
            events.append(((g.withdrawn_at, g.id, 1), withdrawn))
    events.sort(key=lambda e: e[0], reverse=True)
    return ConsentsRead(patient_id=patient_id, tiers=tiers, history=[e for _, e in events])


def joined(grants: list[Grant]) -> datetime | None:
    """When the patient joined, as far as consents tell: their first grant of any tier."""
    return min((g.granted_at for g in grants), default=None)


async def _audit(
    conn: Conn, principal: Principal, action: str, patient_id: str | None, outcome: AuditOutcome, **detail: object
) -> None:
    event = AuditEvent(
        action=action,
        resource=RESOURCE,
        outcome=outcome,
        actor_id=principal.user_id,
        actor_role=principal.role,
        patient_id=patient_id,
        detail=detail,
    )
    await audit_repository.record(conn, event)


async def _own_patient(conn: Conn, principal: Principal, action: str, **detail: object) -> str | Refusal:
    """The caller's own patient id, or the refusal (audited) of a caller who is not a patient."""
    if principal.role != "patient":
        refusal = Refusal(
            403, "not_a_patient", "only a patient has consents of their own; staff read /patients/{id}/consents"
        )
    elif principal.patient_id is None:
        refusal = Refusal(404, "patient_not_found", "this login is not linked to a patient record")
    else:
        return principal.patient_id
    await _audit(conn, principal, action, None, "denied", reason=refusal.code, **detail)
    return refusal


async def read_mine(conn: Conn, principal: Principal) -> ConsentsRead | Refusal:
    """The caller's own consents (patients only)."""
    patient_id = await _own_patient(conn, principal, "read")
    if isinstance(patient_id, Refusal):
        return patient_id
    return await _read(conn, principal, patient_id)


async def read_patient(conn: Conn, principal: Principal, patient_id: str) -> ConsentsRead | Refusal:
    """A patient's consents for whoever may see the patient; any other id 404."""
    if not (await patient_access(conn, principal, patient_id)).allowed:
        await _audit(conn, principal, "read", patient_id, "denied", reason="not_visible")
        return Refusal(404, "patient_not_found", f"no patient {patient_id!r} among the patients you can see")
    return await _read(conn, principal, patient_id)


async def _read(conn: Conn, principal: Principal, patient_id: str) -> ConsentsRead:
    read = consents_of(patient_id, await repository.grants(conn, patient_id))
    await _audit(conn, principal, "read", patient_id, "allowed", history=len(read.history))
    return read


async def change_mine(
    conn: Conn, principal: Principal, tier: Tier, change: ConsentChange, now: datetime
) -> ConsentsRead | Refusal:
    """Give or withdraw one tier of the caller's own consents."""
    asked: dict[str, object] = {"tier": tier, "change": change.action}
    if change.action == "give":
        asked["document_version"] = change.document_version
    patient_id = await _own_patient(conn, principal, "update", **asked)
    if isinstance(patient_id, Refusal):
        return patient_id
    spec = TIERS[tier]
    await repository.lock_patient(conn, patient_id)
    grants = await repository.grants(conn, patient_id)
    open_rows = [g for g in grants if g.scope == spec.scope and g.withdrawn_at is None]
    refusal: Refusal | None = None
    if change.action == "give":
        if change.document_version != spec.current_version:
            refusal = Refusal(
                422,
                "unknown_document_version",
                f"document_version must be the current version of the {tier} document: {spec.current_version!r}",
            )
        elif any(g.document_version == spec.current_version for g in open_rows):
            refusal = Refusal(409, "already_given", f"{tier} is already given for {spec.current_version!r}")
        else:
            # An open grant of an older version (or from enrolment) is replaced: closed now, and
            # the new one opens at the same instant, so collection has no gap.
            if open_rows:
                await repository.withdraw(conn, patient_id, spec.scope, now)
            await repository.give(conn, patient_id, spec.scope, spec.current_version, now, principal.user_id)
    elif open_rows:
        await repository.withdraw(conn, patient_id, spec.scope, now)
    elif tier in _GIVEN_AT_ENROLMENT and not any(g.scope == spec.scope for g in grants):
        # Given at enrolment without a row: the row is recorded as it stood (no version, from
        # when the patient joined) and closed now, so the history and the view both say so.
        await repository.record_enrolment_grant(conn, patient_id, spec.scope, joined(grants) or now)
        await repository.withdraw(conn, patient_id, spec.scope, now)
        asked["enrolment_grant_recorded"] = True
    else:
        refusal = Refusal(409, "not_given", f"{tier} is not given; there is nothing to withdraw")
    if refusal is not None:
        await _audit(conn, principal, "update", patient_id, "denied", reason=refusal.code, **asked)
        return refusal
    await _audit(conn, principal, "update", patient_id, "allowed", **asked)
    return consents_of(patient_id, await repository.grants(conn, patient_id))
