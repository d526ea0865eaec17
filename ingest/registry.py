"""The device registry as seen by the bridge: devices, bindings to patients, enrolment
and consent, loaded from the database into memory and refreshed in the background.

Validation reads a consistent snapshot; a lookup of an unknown device triggers an early
refresh (rate limited) so a freshly provisioned device is accepted within a second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from psycopg import AsyncConnection

from ingest.validation import Binding


@dataclass(slots=True)
class RegistrySnapshot:
    """Implements `ingest.validation.Registry` over plain dictionaries."""

    devices: dict[str, datetime | None] = field(default_factory=dict)  # id -> revoked_at
    device_bindings: dict[str, list[Binding]] = field(default_factory=dict)
    enrolment: dict[str, datetime] = field(default_factory=dict)
    consents: dict[str, list[tuple[datetime, datetime | None]]] = field(default_factory=dict)
    loaded_at: float = 0.0

    def device_known(self, device_id: str) -> bool:
        return device_id in self.devices

    def device_revoked(self, device_id: str) -> bool:
        return self.devices.get(device_id) is not None

    def bindings(self, device_id: str) -> list[Binding]:
        return self.device_bindings.get(device_id, [])

    def enrolled_at(self, patient_id: str) -> datetime | None:
        return self.enrolment.get(patient_id)

    def has_consent(self, patient_id: str, at: datetime) -> bool:
        return any(g <= at and (w is None or at < w) for g, w in self.consents.get(patient_id, []))


def _utc(at: datetime | None) -> datetime | None:
    """In the zone object the bridge's own times carry: two aware times with the same tzinfo
    compare field by field, others call into their zones on every comparison (a tenth of the
    bridge's CPU with a thousand devices, one reading per message)."""
    return None if at is None else at.astimezone(UTC)


async def load_snapshot(conn: AsyncConnection) -> RegistrySnapshot:
    """Times come back in the database session's zone; they are kept in UTC (`_utc`)."""
    snap = RegistrySnapshot(loaded_at=time.monotonic())
    cur = await conn.execute("SELECT id, revoked_at FROM devices")
    for device_id, revoked_at in await cur.fetchall():
        snap.devices[device_id] = _utc(revoked_at)
    cur = await conn.execute(
        "SELECT device_id, patient_id, valid_from, valid_to FROM device_bindings ORDER BY valid_from"
    )
    for device_id, patient_id, valid_from, valid_to in await cur.fetchall():
        snap.device_bindings.setdefault(device_id, []).append(
            Binding(patient_id, valid_from.astimezone(UTC), _utc(valid_to))
        )
    cur = await conn.execute("SELECT id, enrolled_at FROM patients")
    for patient_id, enrolled_at in await cur.fetchall():
        snap.enrolment[patient_id] = enrolled_at.astimezone(UTC)
    cur = await conn.execute(
        "SELECT patient_id, granted_at, withdrawn_at FROM consents WHERE scope = 'remote_monitoring'"
    )
    for patient_id, granted_at, withdrawn_at in await cur.fetchall():
        snap.consents.setdefault(patient_id, []).append((granted_at.astimezone(UTC), _utc(withdrawn_at)))
    return snap
