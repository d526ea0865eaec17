"""SQL of the audit trail. The app role may only INSERT here: the table is append-only."""

from __future__ import annotations

from psycopg.types.json import Jsonb

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
            Jsonb(event.detail),
        ),
    )
