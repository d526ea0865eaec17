"""Rules of devices: admins provision, revoke and bind; admins list every device, clinicians
the devices bound to the patients of their care teams, patients their own. Every request is
audited (the secret never is). Provisioning goes through `core.clients.provisioning` (database rows in the
request's transaction, then the broker's dynamic security; a broker that does not answer
rolls the rows back and answers 503).

The broker admin client (paho) is synchronous: connecting runs in a worker thread; the one
command each call sends is a loopback round trip bounded by the client's timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from starlette.concurrency import run_in_threadpool

from api.audit import repository as audit_repository
from api.audit.schemas import AuditEvent, AuditOutcome
from api.auth.schemas import Principal
from api.db import Conn
from api.devices import repository
from api.devices.schemas import DeviceBind, DeviceCredentialsRead, DevicePage, DeviceProvision, DeviceQuery, DeviceRead
from core.clients.broker_admin import BrokerAdmin, BrokerAdminError
from core.clients.provisioning import ProvisioningError, bind_device, provision_device, revoke_device

RESOURCE: Final = "device"
_STATUS: Final = {
    "unknown_patient": 404,
    "unknown_device": 404,
    "device_bound": 409,
    "binding_overlap": 409,
    "device_revoked": 409,
    "invalid_binding": 422,
    "unknown_device_class": 422,
}

BrokerAdminFactory = Callable[[], BrokerAdmin]


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    detail: str
    headers: dict[str, str] | None = None


def _audit(conn: Conn, principal: Principal, action: str, patient_id: str | None = None) -> Any:
    async def audit(outcome: AuditOutcome, **detail: Any) -> None:
        await audit_repository.record(
            conn,
            AuditEvent(
                action=action,
                resource=RESOURCE,
                outcome=outcome,
                actor_id=principal.user_id,
                actor_role=principal.role,
                patient_id=patient_id,
                detail={"client_ip": principal.client_ip, "session_id": principal.session_id, **detail},
            ),
        )

    return audit


def _refused(exc: ProvisioningError) -> Refusal:
    code = exc.code if exc.code in _STATUS else "refused"
    if code == "unknown_patient":
        code = "patient_not_found"
    elif code == "unknown_device":
        code = "device_not_found"
    return Refusal(_STATUS.get(exc.code, 409), code, str(exc))


_BROKER_DOWN: Final = Refusal(
    503,
    "broker_unavailable",
    "the MQTT broker did not take the change; nothing was changed, try again shortly",
    {"Retry-After": "5"},
)


async def _admin_only(principal: Principal, audit: Any, **detail: Any) -> Refusal | None:
    if principal.role == "admin":
        return None
    await audit("denied", reason="role", **detail)
    return Refusal(403, "role_not_allowed", "only admins manage devices")


async def provision(
    conn: Conn, broker: BrokerAdminFactory, principal: Principal, body: DeviceProvision
) -> DeviceCredentialsRead | Refusal:
    audit = _audit(conn, principal, "provision", body.patient_id)
    asked = {"device_id": body.device_id, "device_class": body.device_class}
    refusal = await _admin_only(principal, audit, **asked)
    if refusal is not None:
        return refusal
    admin = broker()
    try:
        # A savepoint: a refusal (database or broker) undoes the rows, the audit event stays.
        async with conn.transaction():
            await run_in_threadpool(admin.__enter__)
            try:
                creds = await provision_device(
                    conn,
                    admin,
                    device_id=body.device_id,
                    patient_id=body.patient_id,
                    device_class=body.device_class,
                    valid_from=body.valid_from,
                    valid_to=body.valid_to,
                    model=body.model,
                )
            finally:
                await run_in_threadpool(admin.close)
    except ProvisioningError as exc:
        refusal = _refused(exc)
        await audit("denied", reason=refusal.code, **asked)
        return refusal
    except BrokerAdminError as exc:
        await audit("error", reason="broker_unavailable", error=str(exc)[:200], **asked)
        return _BROKER_DOWN
    await audit("allowed", **asked)
    return DeviceCredentialsRead(
        device_id=creds.device_id,
        patient_id=creds.patient_id,
        device_class=creds.device_class,
        username=creds.username,
        password=creds.password,
    )


async def revoke(conn: Conn, broker: BrokerAdminFactory, principal: Principal, device_id: str) -> DeviceRead | Refusal:
    before = await repository.get_device(conn, device_id)
    patient = before.binding.patient_id if before is not None and before.binding is not None else None
    audit = _audit(conn, principal, "revoke", patient)
    refusal = await _admin_only(principal, audit, device_id=device_id)
    if refusal is not None:
        return refusal
    if before is None:
        await audit("denied", reason="device_not_found", device_id=device_id)
        return Refusal(404, "device_not_found", f"no device {device_id!r}")
    admin = broker()
    try:
        async with conn.transaction():
            await run_in_threadpool(admin.__enter__)
            try:
                await revoke_device(conn, admin, device_id)
            finally:
                await run_in_threadpool(admin.close)
    except ProvisioningError as exc:
        refusal = _refused(exc)
        await audit("denied", reason=refusal.code, device_id=device_id)
        return refusal
    except BrokerAdminError as exc:
        await audit("error", reason="broker_unavailable", error=str(exc)[:200], device_id=device_id)
        return _BROKER_DOWN
    await audit("allowed", device_id=device_id)
    after = await repository.get_device(conn, device_id)
    assert after is not None
    return after


async def bind(conn: Conn, principal: Principal, device_id: str, body: DeviceBind) -> DeviceRead | Refusal:
    audit = _audit(conn, principal, "bind", body.patient_id)
    refusal = await _admin_only(principal, audit, device_id=device_id)
    if refusal is not None:
        return refusal
    try:
        async with conn.transaction():
            await bind_device(
                conn,
                device_id=device_id,
                patient_id=body.patient_id,
                valid_from=body.valid_from,
                valid_to=body.valid_to,
            )
    except ProvisioningError as exc:
        refusal = _refused(exc)
        await audit("denied", reason=refusal.code, device_id=device_id)
        return refusal
    await audit("allowed", device_id=device_id)
    device = await repository.get_device(conn, device_id)
    assert device is not None
    return device


async def list_devices(conn: Conn, principal: Principal, query: DeviceQuery) -> DevicePage | Refusal:
    audit = _audit(conn, principal, "list")
    asked = {"limit": query.limit, "cursor": query.cursor}
    if principal.role == "admin":
        rows = await repository.list_devices(conn, after=query.cursor, limit=query.limit + 1)
    elif principal.role == "clinician":
        rows = await repository.list_devices(
            conn, after=query.cursor, limit=query.limit + 1, clinician=principal.user_id
        )
    elif principal.role == "patient" and principal.patient_id is not None:
        rows = await repository.list_devices(
            conn, after=query.cursor, limit=query.limit + 1, patient=principal.patient_id
        )
    else:
        await audit("denied", reason="role", **asked)
        return Refusal(403, "role_not_allowed", "devices are listed for admins, clinicians and patients")
    items = rows[: query.limit]
    next_cursor = items[-1].device_id if len(rows) > query.limit else None
    await audit("allowed", returned=len(items), **asked)
    return DevicePage(items=items, next_cursor=next_cursor)
