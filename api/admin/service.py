"""Rules of the audit query: admins only; the query itself is audited (its filters, how many
events went out), as is a refusal."""

from __future__ import annotations

from dataclasses import dataclass

from api.admin import repository
from api.admin.schemas import AuditPage, AuditQuery, encode_cursor
from api.audit import repository as audit_repository
from api.audit.schemas import AuditEvent, AuditOutcome
from api.auth.schemas import Principal
from api.db import Conn


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    detail: str


async def query_audit(conn: Conn, principal: Principal, query: AuditQuery) -> AuditPage | Refusal:
    asked: dict[str, object] = {
        k: (v if isinstance(v, int | bool) else str(v))
        for k, v in query.model_dump(exclude={"cursor"}).items()
        if v is not None
    }
    asked["client_ip"] = principal.client_ip

    async def audit(outcome: AuditOutcome, **detail: object) -> None:
        await audit_repository.record(
            conn,
            AuditEvent(
                action="read",
                resource="audit_events",
                outcome=outcome,
                actor_id=principal.user_id,
                actor_role=principal.role,
                patient_id=query.patient_id,
                detail={**asked, **detail},
            ),
        )

    if principal.role != "admin":
        await audit("denied", reason="role")
        return Refusal(403, "role_not_allowed", "only admins query the audit trail")
    rows = await repository.query_events(conn, query, query.limit + 1)
    items = rows[: query.limit]
    next_cursor = encode_cursor(items[-1].at, items[-1].id) if len(rows) > query.limit else None
    await audit("allowed", returned=len(items))
    return AuditPage(items=items, next_cursor=next_cursor)
