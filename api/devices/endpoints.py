"""HTTP endpoints of devices: provision, revoke, bind, list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from api.auth.dependencies import CurrentPrincipal
from api.db import Pool
from api.dependencies import get_pool, get_settings
from api.devices import service
from api.devices.schemas import (
    DEVICE_ID_PATTERN,
    DeviceBind,
    DeviceCredentialsRead,
    DevicePage,
    DeviceProvision,
    DeviceQuery,
    DeviceRead,
)
from api.problems import Problem, problem_responses
from api.settings import ApiSettings
from core.clients.broker_admin import BrokerAdmin

router = APIRouter(tags=["devices"])

DeviceIdPath = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, description="Device id")]


def get_broker_admin(request: Request) -> service.BrokerAdminFactory:
    settings: ApiSettings = request.app.state.settings

    def connect() -> BrokerAdmin:
        return BrokerAdmin(
            settings.mqtt_host,
            settings.mqtt_port,
            settings.mqtt_admin_username,
            settings.mqtt_admin_password.get_secret_value(),
            timeout=settings.broker_admin_timeout,
        )

    return connect


def _raise(refusal: service.Refusal) -> Problem:
    return Problem(refusal.status, refusal.code, refusal.detail, headers=refusal.headers)


@router.post(
    "/devices",
    status_code=201,
    response_model=DeviceCredentialsRead,
    summary="Provision a device for a patient (admins); answers its secret once",
    description="Creates the device (or re-issues the credentials of a device bound to the same patient), "
    "binds it to the patient and creates its MQTT credentials and ACL in the broker. The password is in "
    "this answer only.",
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
async def provision_device(
    body: DeviceProvision,
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    broker: Annotated[service.BrokerAdminFactory, Depends(get_broker_admin)],
) -> DeviceCredentialsRead:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.provision(conn, broker, principal, body)
    if isinstance(outcome, service.Refusal):
        raise _raise(outcome)
    return outcome


@router.post(
    "/devices/{device_id}/revoke",
    response_model=DeviceRead,
    summary="Revoke a device (admins): its binding ends and the broker refuses it at once",
    responses=problem_responses(401, 403, 404, 503),
)
async def revoke_device(
    device_id: DeviceIdPath,
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    broker: Annotated[service.BrokerAdminFactory, Depends(get_broker_admin)],
) -> DeviceRead:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.revoke(conn, broker, principal, device_id)
    if isinstance(outcome, service.Refusal):
        raise _raise(outcome)
    return outcome


@router.post(
    "/devices/{device_id}/bind",
    response_model=DeviceRead,
    summary="Bind a device to a patient from a given start (admins); credentials unchanged",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def bind_device(
    device_id: DeviceIdPath,
    body: DeviceBind,
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> DeviceRead:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.bind(conn, principal, device_id, body)
    if isinstance(outcome, service.Refusal):
        raise _raise(outcome)
    return outcome


@router.get(
    "/devices",
    response_model=DevicePage,
    summary="Devices with their binding and last reading",
    description="Admins: every device; clinicians: devices bound to the patients of their care teams; "
    "patients: their own. In device id order, keyset paging.",
    responses=problem_responses(401, 403, 422),
)
async def list_devices(
    query: Annotated[DeviceQuery, Query()],
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> DevicePage:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.list_devices(conn, principal, query)
    if isinstance(outcome, service.Refusal):
        raise _raise(outcome)
    return outcome
