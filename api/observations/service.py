"""Rules of observation reads: access by care team, audit of every attempt (with the
caller's address and session), keyset paging with an opaque cursor."""

from __future__ import annotations

from api.access.service import may_read_patient
from api.audit import repository as audit_repository
from api.audit.schemas import AuditEvent
from api.auth.schemas import Principal
from api.db import Conn
from api.observations import repository
from api.observations.schemas import ObservationPage, ObservationQuery, encode_cursor
from core.catalogue import CATALOGUE

READ_ACTION = "read"
RESOURCE = "observations"


async def read_observations(
    conn: Conn, principal: Principal, patient_id: str, query: ObservationQuery
) -> ObservationPage | None:
    """The page, or None when the caller may not see this patient (or it does not exist).

    Both outcomes are audited in the caller's transaction; the detail names what was
    asked for and how many items went out, never the values.
    """
    start, end = query.range
    asked: dict[str, object] = {
        "metric": query.metric,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "limit": query.limit,
        "client_ip": principal.client_ip,
        "session_id": principal.session_id,
    }
    if query.after is not None:
        asked["after"] = query.after.isoformat()
    allowed = await may_read_patient(conn, principal, patient_id)
    if not allowed:
        await audit_repository.record(
            conn,
            AuditEvent(
                action=READ_ACTION,
                resource=RESOURCE,
                outcome="denied",
                actor_id=principal.user_id,
                actor_role=principal.role,
                patient_id=patient_id,
                detail={**asked, "reason": "not_visible"},
            ),
        )
        return None
    # One row more than asked tells whether the range holds more than the page.
    rows = await repository.list_observations(
        conn, patient_id, query.metric, start, end, query.limit + 1, after=query.after
    )
    items, truncated = rows[: query.limit], len(rows) > query.limit
    next_cursor = encode_cursor(query.metric, items[-1].ts) if truncated else None
    await audit_repository.record(
        conn,
        AuditEvent(
            action=READ_ACTION,
            resource=RESOURCE,
            outcome="allowed",
            actor_id=principal.user_id,
            actor_role=principal.role,
            patient_id=patient_id,
            detail={**asked, "returned": len(items)},
        ),
    )
    return ObservationPage(
        patient_id=patient_id,
        metric=query.metric,
        unit=CATALOGUE[query.metric].unit,
        start=start,
        end=end,
        items=items,
        truncated=truncated,
        next_cursor=next_cursor,
    )
