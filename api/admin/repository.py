"""SQL of the admins' reads: the audit query (`audit_events`, read-only here) and patient names."""

from __future__ import annotations

from psycopg.rows import class_row

from api.admin.schemas import AuditEventRead, AuditQuery
from api.db import Conn


async def query_events(conn: Conn, query: AuditQuery, limit: int) -> list[AuditEventRead]:
    """Matching events, newest first (at, id), after the cursor's (at, id)."""
    after_at, after_id = query.after if query.after is not None else (None, None)
    async with conn.cursor(row_factory=class_row(AuditEventRead)) as cur:
        await cur.execute(
            """
            SELECT id, at, actor_id, actor_role, patient_id, action, resource, outcome, detail
            FROM audit_events
            WHERE (%(patient)s::text IS NULL OR patient_id = %(patient)s::text)
              AND (%(actor)s::uuid IS NULL OR actor_id = %(actor)s::uuid)
              AND (%(action)s::text IS NULL OR action = %(action)s::text)
              AND (%(resource)s::text IS NULL OR resource = %(resource)s::text)
              AND (%(outcome)s::text IS NULL OR outcome = %(outcome)s::text)
              AND (%(break_glass)s::boolean IS NULL
                   OR coalesce(detail ->> 'break_glass' = 'true', false) = %(break_glass)s::boolean)
              AND (%(start)s::timestamptz IS NULL OR at >= %(start)s::timestamptz)
              AND (%(end)s::timestamptz IS NULL OR at < %(end)s::timestamptz)
              AND (%(after_at)s::timestamptz IS NULL
                   OR (at, id) < (%(after_at)s::timestamptz, %(after_id)s::bigint))
            ORDER BY at DESC, id DESC
            LIMIT %(limit)s
            """,
            {
                "patient": query.patient_id,
                "actor": query.actor_id,
                "action": query.action,
                "resource": query.resource,
                "outcome": query.outcome,
                "break_glass": query.break_glass,
                "start": query.start,
                "end": query.end,
                "after_at": after_at,
                "after_id": after_id,
                "limit": limit,
            },
        )
        return await cur.fetchall()


async def patient_names(conn: Conn, patient_ids: list[str]) -> dict[str, str]:
    """Display names of these patients, by id (for admins' pages; unknown ids are left out)."""
    if not patient_ids:
        return {}
    cur = await conn.execute("SELECT id, display_name FROM patients WHERE id = ANY(%s)", (patient_ids,))
    return {str(row[0]): str(row[1]) for row in await cur.fetchall() if row[1]}
