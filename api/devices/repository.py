"""SQL of the device list (devices, their bindings, last seen). Provisioning, revocation and
binding are `core.clients.provisioning`, the library the `rpm devices` CLI uses too."""

from __future__ import annotations

import uuid
from typing import Any, Final

from api.db import Conn
from api.devices.schemas import Binding, DeviceRead
from core.catalogue import METRIC_NAMES

LAST_SEEN_DAYS: Final = 30
# Last seen: per metric, the newest row on the (patient_id, metric, ts) index that is this
# device's; a patient's other devices only lengthen the walk for metrics they share.
METRICS: Final = list(METRIC_NAMES)

_SELECT: Final = """
    SELECT d.id, d.device_class, d.model, d.created_at, d.revoked_at, b.patient_id, b.valid_from, b.valid_to,
           (SELECT max(x.ts) FROM unnest(%(metrics)s::text[]) AS m (metric)
            CROSS JOIN LATERAL (
                SELECT o.ts FROM observations AS o
                WHERE o.patient_id = b.patient_id AND o.metric = m.metric AND o.device_id = d.id
                  AND o.ts > now() - make_interval(days => %(days)s)
                ORDER BY o.ts DESC
                LIMIT 1
            ) AS x) AS last_seen
    FROM devices AS d
    LEFT JOIN LATERAL (
        SELECT patient_id, valid_from, valid_to FROM device_bindings
        WHERE device_id = d.id
        ORDER BY (valid_to IS NULL) DESC, valid_from DESC
        LIMIT 1
    ) AS b ON true
"""


def _read(row: tuple[Any, ...]) -> DeviceRead:
    binding = None if row[5] is None else Binding(patient_id=row[5], valid_from=row[6], valid_to=row[7])
    return DeviceRead(
        device_id=row[0],
        device_class=row[1],
        model=row[2],
        created_at=row[3],
        revoked_at=row[4],
        binding=binding,
        last_seen=row[8],
    )


async def get_device(conn: Conn, device_id: str) -> DeviceRead | None:
    cur = await conn.execute(
        _SELECT + " WHERE d.id = %(id)s", {"days": LAST_SEEN_DAYS, "metrics": METRICS, "id": device_id}
    )
    row = await cur.fetchone()
    return None if row is None else _read(row)


async def list_devices(
    conn: Conn,
    *,
    after: str | None,
    limit: int,
    clinician: uuid.UUID | None = None,
    patient: str | None = None,
) -> list[DeviceRead]:
    """Devices in id order after `after`; a clinician's: those bound now to a patient of
    their care teams (now or from a future start); a patient's: their own; neither: all."""
    where = ["(%(after)s::text IS NULL OR d.id > %(after)s::text)"]
    if clinician is not None:
        where.append(
            """EXISTS (SELECT 1 FROM device_bindings AS cb
                       JOIN care_team_patients_shared AS p ON p.patient_id = cb.patient_id
                       JOIN care_team_members AS m ON m.care_team_id = p.care_team_id
                       WHERE cb.device_id = d.id AND (cb.valid_to IS NULL OR cb.valid_to > now())
                         AND m.user_id = %(user)s)"""
        )
    if patient is not None:
        where.append(
            """EXISTS (SELECT 1 FROM device_bindings AS pb
                       WHERE pb.device_id = d.id AND (pb.valid_to IS NULL OR pb.valid_to > now())
                         AND pb.patient_id = %(patient)s)"""
        )
    sql = _SELECT + " WHERE " + " AND ".join(where) + " ORDER BY d.id LIMIT %(limit)s"
    cur = await conn.execute(
        sql,  # composed from the constant fragments above only
        {
            "days": LAST_SEEN_DAYS,
            "metrics": METRICS,
            "after": after,
            "limit": limit,
            "user": clinician,
            "patient": patient,
        },
    )
    return [_read(row) for row in await cur.fetchall()]
