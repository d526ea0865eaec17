"""The access rule for a patient's record, per role.

- admin: any existing patient (administration and support; every read is still audited);
- clinician: patients of the care teams they belong to;
- patient: only themselves;
- ops: no patient records at all (they run the pipeline, not the care).
"""

from __future__ import annotations

from api.access import repository
from api.auth.schemas import Principal
from api.db import Conn


async def may_read_patient(conn: Conn, principal: Principal, patient_id: str) -> bool:
    """True when the caller may read this patient's record; False also when it does not exist."""
    if principal.role == "patient":
        return principal.patient_id is not None and principal.patient_id == patient_id
    if principal.role == "clinician":
        return await repository.clinician_cares_for(conn, principal.user_id, patient_id)
    if principal.role == "admin":
        return await repository.patient_exists(conn, patient_id)
    return False
