"""Device provisioning and revocation: the library call used by `rpm devices`, the simulator and
the API (in core/clients, since it talks to the database and the broker).

A device gets a row, a binding to a patient for a validity period, and its own MQTT
credentials in the broker (dynamic security, no restart). Revocation closes the binding
and disables the credentials, which disconnects the device at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg import AsyncConnection

from core.catalogue import DEVICE_CLASSES
from core.clients.broker_admin import BrokerAdmin


class ProvisioningError(ValueError):
    """The request cannot be carried out (unknown patient, device already bound, ...); `code`
    names the reason for callers that answer it (the API's problem codes)."""

    def __init__(self, message: str, code: str = "refused") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    device_id: str
    patient_id: str
    device_class: str
    username: str
    password: str


async def provision_device(
    conn: AsyncConnection,
    admin: BrokerAdmin,
    *,
    device_id: str,
    patient_id: str,
    device_class: str,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
    model: str = "",
    password: str | None = None,
) -> DeviceCredentials:
    """Create (or re-issue) a device, bind it to a patient and create its broker credentials.

    Runs inside the caller's transaction; the broker step comes last so a refused database
    write leaves no orphan credentials.
    """
    if device_class not in DEVICE_CLASSES:
        raise ProvisioningError(
            f"unknown device class {device_class!r}; expected one of {', '.join(DEVICE_CLASSES)}",
            "unknown_device_class",
        )
    start = valid_from or datetime.now(UTC)
    if valid_to is not None and valid_to <= start:
        raise ProvisioningError("the binding must end after it starts", "invalid_binding")
    cur = await conn.execute("SELECT 1 FROM patients WHERE id = %s", (patient_id,))
    if await cur.fetchone() is None:
        raise ProvisioningError(f"unknown patient {patient_id!r}", "unknown_patient")
    await conn.execute(
        """INSERT INTO devices (id, device_class, model) VALUES (%s, %s, %s)
           ON CONFLICT (id) DO UPDATE SET revoked_at = NULL, device_class = EXCLUDED.device_class""",
        (device_id, device_class, model),
    )
    await _bind(conn, device_id, patient_id, start, valid_to)
    secret = password or secrets.token_urlsafe(24)
    admin.provision_device(device_id, secret)
    return DeviceCredentials(device_id, patient_id, device_class, device_id, secret)


async def _bind(
    conn: AsyncConnection, device_id: str, patient_id: str, start: datetime, valid_to: datetime | None
) -> bool:
    """Open a binding unless the device's open binding is already to this patient (False then)."""
    cur = await conn.execute(
        "SELECT patient_id FROM device_bindings WHERE device_id = %s AND valid_to IS NULL", (device_id,)
    )
    current = await cur.fetchone()
    if current is not None and current[0] != patient_id:
        raise ProvisioningError(f"device {device_id!r} is bound to another patient; revoke it first", "device_bound")
    if current is not None:
        return False
    try:
        # A savepoint: the caller's transaction survives a refused binding.
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO device_bindings (device_id, patient_id, valid_from, valid_to) VALUES (%s, %s, %s, %s)",
                (device_id, patient_id, start, valid_to),
            )
    except psycopg.errors.ExclusionViolation as exc:
        raise ProvisioningError(
            f"device {device_id!r} already has a binding overlapping that period", "binding_overlap"
        ) from exc
    return True


async def bind_device(
    conn: AsyncConnection,
    *,
    device_id: str,
    patient_id: str,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
) -> bool:
    """Bind an existing, unrevoked device to a patient from `valid_from` (default now); its
    credentials stay as they are. False when it is already bound to this patient."""
    start = valid_from or datetime.now(UTC)
    if valid_to is not None and valid_to <= start:
        raise ProvisioningError("the binding must end after it starts", "invalid_binding")
    cur = await conn.execute("SELECT revoked_at FROM devices WHERE id = %s", (device_id,))
    row = await cur.fetchone()
    if row is None:
        raise ProvisioningError(f"unknown device {device_id!r}", "unknown_device")
    if row[0] is not None:
        raise ProvisioningError(f"device {device_id!r} is revoked; provision it again", "device_revoked")
    cur = await conn.execute("SELECT 1 FROM patients WHERE id = %s", (patient_id,))
    if await cur.fetchone() is None:
        raise ProvisioningError(f"unknown patient {patient_id!r}", "unknown_patient")
    return await _bind(conn, device_id, patient_id, start, valid_to)


async def revoke_device(conn: AsyncConnection, admin: BrokerAdmin, device_id: str) -> None:
    """Close the device's binding, mark it revoked and disable its broker credentials."""
    now = datetime.now(UTC)
    cur = await conn.execute(
        "UPDATE devices SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL RETURNING id", (now, device_id)
    )
    if await cur.fetchone() is None:
        cur = await conn.execute("SELECT 1 FROM devices WHERE id = %s", (device_id,))
        if await cur.fetchone() is None:
            raise ProvisioningError(f"unknown device {device_id!r}", "unknown_device")
    await conn.execute(
        "UPDATE device_bindings SET valid_to = %s WHERE device_id = %s AND valid_to IS NULL", (now, device_id)
    )
    admin.revoke_device(device_id)
