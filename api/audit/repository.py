"""SQL of the audit trail. The app role may only INSERT here: the table is append-only.

An event about a patient this request reached through a break-glass grant carries
`break_glass: true` and the grant id (api.access.service notes the grant when it allows it).
"""

from __future__ import annotations

from psycopg.types.json import Jsonb

from api.access.service import break_glass_detail
from api.audit.schemas import AuditEvent
from api.db import Conn


async def record(conn: Conn, event: AuditEvent) -> None:
    """Insert the event in the caller's transaction (it commits with the request)."""
    await conn.execute(
        """
        INSERT INTO audit_events
            (actor_id, actor_role, patient_id, action, resource, outcome, detail)
        VALUES (%s, %s, %s, %s, %s, %s, %s)
        """,
        (
            event.actor_id,
            event.actor_role,
            event.patient_id,
            event.action,
            event.resource,
            event.outcome,
            Jsonb({**event.detail, **break_glass_detail(event.patient_id)}),
        ),
    )
