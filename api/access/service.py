"""The access rule for a patient's record, per role.

- admin: any existing patient (administration and support; every read is still audited);
- clinician: patients of the care teams they belong to who share with their care team (ADR
  0024: not after the patient withdrew `share_care_team`; the view `care_team_patients_shared`
  of migration 0015 holds the rule, read by `repository.clinician_cares_for` and by every list
  of "my care teams' patients"), and any other patient while an unexpired break-glass grant of
  theirs covers that patient (ADR 0021);
- patient: only themselves;
- ops: no patient records at all (they run the pipeline, not the care).

Access through break-glass is noted for the rest of the request (a context variable, one per
request task), and `api.audit.repository.record` adds `break_glass: true` and the grant id to
the audit event of that patient: every route that checks access through here is audited as
break-glass without knowing about it.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from api.access import repository
from api.auth.schemas import Principal
from api.db import Conn

# patient id -> grant id, for the current request only.
_BREAK_GLASS: ContextVar[dict[str, uuid.UUID] | None] = ContextVar("break_glass", default=None)


@dataclass(frozen=True, slots=True)
class Access:
    allowed: bool
    break_glass_grant: uuid.UUID | None = None
    care_team: bool = False  # a clinician of the patient's own care team (or the admin)


async def patient_access(conn: Conn, principal: Principal, patient_id: str) -> Access:
    """How the caller may see this patient: not at all (also when it does not exist), as
    themself, through their care team (or as admin), or through a break-glass grant."""
    if principal.role == "patient":
        return Access(principal.patient_id is not None and principal.patient_id == patient_id)
    if principal.role == "clinician":
        if await repository.clinician_cares_for(conn, principal.user_id, patient_id):
            return Access(True, care_team=True)
        grant = await repository.active_break_glass(conn, principal.user_id, patient_id)
        noted = dict(_BREAK_GLASS.get() or {})
        noted.pop(patient_id, None)
        if grant is not None:
            noted[patient_id] = grant
        _BREAK_GLASS.set(noted)
        return Access(grant is not None, break_glass_grant=grant)
    if principal.role == "admin":
        return Access(await repository.patient_exists(conn, patient_id), care_team=True)
    return Access(False)


async def forget_break_glass() -> None:
    """An app-wide dependency: each request starts with no break-glass noted (a server may run
    requests in a context that an earlier request's task left behind)."""
    _BREAK_GLASS.set(None)


async def may_read_patient(conn: Conn, principal: Principal, patient_id: str) -> bool:
    """True when the caller may read this patient's record; False also when it does not exist."""
    return (await patient_access(conn, principal, patient_id)).allowed


def break_glass_detail(patient_id: str | None) -> dict[str, Any]:
    """What the audit event of this patient adds when this request reached it by break-glass."""
    if patient_id is None:
        return {}
    grant = (_BREAK_GLASS.get() or {}).get(patient_id)
    return {} if grant is None else {"break_glass": True, "break_glass_grant": str(grant)}
