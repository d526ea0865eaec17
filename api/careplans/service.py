"""Rules of care plans: who reads and changes them, validation, optimistic concurrency, the
audit trail, publishing, and the what-if.

- Read (GET): whoever may see the patient (api.access: the patient, their care team, an
  admin, a clinician with an active break-glass grant).
- Change (PUT) and what-if: a clinician of the patient's care team, or an admin. A patient
  reading their own plan, or a clinician under break-glass, gets 403; any other id is 404.
- Consistency with the topic (ADR 0021): the new version is written under the row lock, then
  published to `rpm.care-plans.v1` and acknowledged, and only then is the transaction
  committed. When Kafka does not take it, the write is rolled back (the request answers 503):
  the database never holds a version the worker did not get. Should the commit itself fail
  after the acknowledgement, the topic holds a version the database does not; the next
  change (same version number, newer content) supersedes it on the compacted topic.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

import msgspec
from starlette.concurrency import run_in_threadpool

from api.access.service import Access, patient_access
from api.audit import repository as audit_repository
from api.audit.schemas import AuditEvent, AuditOutcome
from api.auth.schemas import Principal
from api.careplans import repository
from api.careplans.schemas import (
    CarePlanRead,
    CarePlanUpdate,
    PlanOutcome,
    RuleAlerts,
    WhatIfAnswer,
    WhatIfRequest,
)
from api.careplans.whatif import Replay, replay
from api.db import Conn
from core.careplan import CarePlan, decode_care_plan, default_care_plan, encode_care_plan
from core.wire import Reading

RESOURCE: Final = "care_plan"
_ETAG: Final = re.compile(r'^\s*(?:W/)?"?(\d{1,10})"?\s*$')
WHAT_IF_NOTE: Final = (
    "reading-driven rules only (limits, NEWS2, BP crisis, weight gain, glucose, baseline); missed "
    "measurements, missed doses and device silence are judged on a timer and not replayed"
)


class Publisher(Protocol):
    async def publish(self, patient_id: str, value: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    detail: str
    headers: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class WhatIfLimits:
    max_readings: int
    timeout_s: float
    slots: asyncio.Semaphore


def etag(version: int) -> str:
    return f'"{version}"'


def parse_if_match(value: str | None) -> int | Refusal | None:
    if value is None:
        return None
    found = _ETAG.match(value)
    if not found:
        return Refusal(412, "precondition_failed", 'If-Match must be the ETag of the plan read, e.g. "3"')
    return int(found.group(1))


class _Audit:
    def __init__(self, conn: Conn, principal: Principal, patient_id: str, action: str) -> None:
        self.conn, self.principal, self.patient_id, self.action = conn, principal, patient_id, action

    async def __call__(self, outcome: AuditOutcome, **detail: Any) -> None:
        await audit_repository.record(
            self.conn,
            AuditEvent(
                action=self.action,
                resource=RESOURCE,
                outcome=outcome,
                actor_id=self.principal.user_id,
                actor_role=self.principal.role,
                patient_id=self.patient_id,
                detail={"client_ip": self.principal.client_ip, "session_id": self.principal.session_id, **detail},
            ),
        )


def _not_found(patient_id: str) -> Refusal:
    return Refusal(404, "patient_not_found", f"no patient {patient_id!r} among the patients you can see")


async def _may_change(conn: Conn, principal: Principal, patient_id: str, audit: _Audit) -> Access | Refusal:
    access = await patient_access(conn, principal, patient_id)
    if not access.allowed:
        await audit("denied", reason="not_visible")
        return _not_found(patient_id)
    if principal.role not in ("clinician", "admin") or not access.care_team:
        await audit("denied", reason="role")
        return Refusal(403, "care_team_only", "only a clinician of the patient's care team or an admin may do this")
    return access


def _read_of(patient_id: str, stored: repository.StoredPlan | None) -> CarePlanRead:
    if stored is None:
        plan = default_care_plan(patient_id)
        return CarePlanRead(
            patient_id=patient_id,
            version=0,
            plan=msgspec.to_builtins(plan),
            updated_at=None,
            updated_by=None,
        )
    return CarePlanRead(
        patient_id=patient_id,
        version=stored.version,
        plan=stored.plan,
        updated_at=stored.updated_at,
        updated_by=stored.updated_by,
    )


def validate_plan(patient_id: str, body: dict[str, Any], version: int, now: datetime | None) -> CarePlan | Refusal:
    """The plan as the worker will decode it. `now` (a change) is its `effective_from`: a plan
    read, edited and sent back carries the old version's, and schedules must not be judged
    for windows before this version existed."""
    given = body.get("patient_id")
    if given is not None and given != patient_id:
        return Refusal(422, "invalid_care_plan", f"the plan names patient {str(given)[:64]!r}, not {patient_id!r}")
    data = {**body, "patient_id": patient_id, "version": version}
    if now is not None:
        data["effective_from"] = now.isoformat()
    try:
        return decode_care_plan(msgspec.json.encode(data))
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError, TypeError, OverflowError) as exc:
        return Refusal(422, "invalid_care_plan", f"the care plan does not validate: {str(exc)[:500]}")


async def read_plan(conn: Conn, principal: Principal, patient_id: str) -> CarePlanRead | Refusal:
    audit = _Audit(conn, principal, patient_id, "read")
    if not (await patient_access(conn, principal, patient_id)).allowed:
        await audit("denied", reason="not_visible")
        return _not_found(patient_id)
    read = _read_of(patient_id, await repository.get_plan(conn, patient_id))
    await audit("allowed", version=read.version)
    return read


async def update_plan(
    conn: Conn,
    publisher: Publisher,
    principal: Principal,
    patient_id: str,
    body: CarePlanUpdate,
    if_match: str | None,
    now: datetime,
) -> CarePlanRead | Refusal:
    audit = _Audit(conn, principal, patient_id, "update")
    access = await _may_change(conn, principal, patient_id, audit)
    if isinstance(access, Refusal):
        return access
    expected = parse_if_match(if_match)
    if isinstance(expected, Refusal):
        await audit("denied", reason=expected.code)
        return expected
    stored = await repository.get_plan(conn, patient_id)
    current = 0 if stored is None else stored.version
    refusal: Refusal | None = None
    if expected is None and body.version is None:
        refusal = Refusal(
            428, "precondition_required", 'send the version you replace: If-Match: "<version>" or "version"'
        )
    elif expected is not None and expected != current:
        refusal = Refusal(
            412, "precondition_failed", f"the plan is at version {current}, not {expected}; read it again"
        )
    elif body.version is not None and body.version != current:
        refusal = Refusal(
            409, "version_conflict", f"the plan is at version {current}, not {body.version}; read it again"
        )
    if refusal is not None:
        await audit("denied", reason=refusal.code, current_version=current)
        return refusal
    plan = validate_plan(patient_id, body.plan, current + 1, now)
    if isinstance(plan, Refusal):
        await audit("denied", reason=plan.code)
        return plan
    value = encode_care_plan(plan)
    stored_json: dict[str, Any] = msgspec.json.decode(value)
    before = _read_of(patient_id, stored).plan
    try:
        # A savepoint: a refused publish undoes the write but keeps the audit event.
        async with conn.transaction():
            if not await repository.store_plan(
                conn, patient_id, replaces=current, plan=stored_json, by=principal.user_id, at=now
            ):
                raise _LostRace
            await publisher.publish(patient_id, value)
    except _LostRace:
        status, code = (412, "precondition_failed") if expected is not None else (409, "version_conflict")
        await audit("denied", reason=code, current_version=current)
        return Refusal(status, code, "the plan was changed meanwhile; read it again")
    except Exception as exc:
        # Anything a publisher raises (core.retry gave up): nothing stored, say so.
        await audit("error", reason="not_published", error=type(exc).__name__)
        return Refusal(
            503,
            "care_plans_unavailable",
            "the care plan could not be published to the detectors; nothing was changed, try again shortly",
            {"Retry-After": "5"},
        )
    await audit("allowed", version=current + 1, before=before, after=stored_json)
    return CarePlanRead(
        patient_id=patient_id, version=current + 1, plan=stored_json, updated_at=now, updated_by=principal.user_id
    )


class _LostRace(Exception):  # noqa: N818 - control flow inside update_plan
    pass


def _outcome(version: int | None, result: Replay) -> PlanOutcome:
    by_rule = [
        RuleAlerts(rule=rule, alerts=c.alerts, first_at=c.first_at, last_at=c.last_at)
        for rule, c in sorted(result.by_rule.items())
        if c.first_at is not None and c.last_at is not None
    ]
    return PlanOutcome(version=version, alerts=result.alerts, by_rule=by_rule)


@dataclass(frozen=True, slots=True)
class WhatIfWork:
    """What a what-if replays, read in a first transaction (the connection is given back
    while the replay runs)."""

    patient_id: str
    days: int
    start: datetime
    end: datetime
    current_version: int
    current: CarePlan
    proposed: CarePlan
    readings: list[Reading]


async def prepare_what_if(
    conn: Conn, principal: Principal, patient_id: str, body: WhatIfRequest, now: datetime, max_readings: int
) -> WhatIfWork | Refusal:
    """Access, the plans and the readings; a refusal is audited here."""
    audit = _Audit(conn, principal, patient_id, "what_if")
    access = await _may_change(conn, principal, patient_id, audit)
    if isinstance(access, Refusal):
        return access
    stored = await repository.get_plan(conn, patient_id)
    current_version = 0 if stored is None else stored.version
    current = (
        default_care_plan(patient_id)
        if stored is None
        else validate_plan(patient_id, stored.plan, current_version, None)
    )
    if isinstance(current, Refusal):  # stored before a schema change: the worker would use the default
        current = default_care_plan(patient_id)
    proposed = validate_plan(patient_id, body.plan, current_version + 1, None)
    if isinstance(proposed, Refusal):
        await audit("denied", reason=proposed.code, days=body.days)
        return proposed
    start = now - timedelta(days=body.days)
    rows = await repository.readings(conn, patient_id, start, now, max_readings + 1)
    if len(rows) > max_readings:
        await audit("denied", reason="too_many_readings", days=body.days)
        return Refusal(
            422,
            "too_many_readings",
            f"more than {max_readings} stored readings in {body.days} days; ask for fewer days",
        )
    return WhatIfWork(patient_id, body.days, start, now, current_version, current, proposed, rows)


async def run_what_if(work: WhatIfWork, limits: WhatIfLimits) -> tuple[Replay, Replay] | Refusal:
    """Both replays in a worker thread, one slot at a time, under the time limit. A replay that
    times out finishes in its thread; its result is dropped."""
    async with limits.slots:
        try:
            async with asyncio.timeout(limits.timeout_s):
                return await run_in_threadpool(_both, work.patient_id, work.current, work.proposed, work.readings)
        except TimeoutError:
            return Refusal(
                503, "what_if_timeout", "the replay took too long; ask for fewer days", {"Retry-After": "10"}
            )


async def finish_what_if(
    conn: Conn, principal: Principal, work: WhatIfWork, results: tuple[Replay, Replay] | Refusal
) -> WhatIfAnswer | Refusal:
    """The audit event of a replay that ran (or timed out) and the answer."""
    audit = _Audit(conn, principal, work.patient_id, "what_if")
    if isinstance(results, Refusal):
        await audit("error", reason=results.code, days=work.days, readings=len(work.readings))
        return results
    now_result, new_result = results
    await audit(
        "allowed",
        days=work.days,
        readings=len(work.readings),
        current_alerts=now_result.alerts,
        proposed_alerts=new_result.alerts,
    )
    return WhatIfAnswer(
        patient_id=work.patient_id,
        start=work.start.astimezone(UTC),
        end=work.end.astimezone(UTC),
        readings=len(work.readings),
        current=_outcome(work.current_version, now_result),
        proposed=_outcome(None, new_result),
        difference=new_result.alerts - now_result.alerts,
        note=WHAT_IF_NOTE,
    )


def _both(patient_id: str, current: CarePlan, proposed: CarePlan, rows: list[Reading]) -> tuple[Replay, Replay]:
    return replay(patient_id, current, rows), replay(patient_id, proposed, rows)
