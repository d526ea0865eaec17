"""SQL of the device-events lane: the battery a device last reported, on its `devices` row.

One connection of the worker's login (rpm_streams may read `id` and `battery_at` and update
`battery` and `battery_at`, migration 0011), in autocommit: each event is one statement, its
own transaction. Only a newer report replaces the stored one, so a late, older event (a
replay, a bridge catching up) changes nothing, and a replayed event (same time) neither.

A database outage, or a database that refuses the worker (grants, schema), is waited out
like the storage lane does (`streams.storage.service.WAIT_FOR`): the call retries until the
database answers, and the event is not acknowledged meanwhile.
"""

from __future__ import annotations

from typing import Final, Literal

from psycopg import AsyncConnection

from core.logging import get_logger
from core.retry import DATABASE_DOWN, until_done
from streams.devices.service import BatteryReport
from streams.storage.service import MISCONFIGURED, WAIT_FOR

log = get_logger("streams.devices")

BatteryOutcome = Literal["applied", "stale", "unknown_device"]

UPDATE_BATTERY: Final = (
    "UPDATE devices SET battery = %s, battery_at = %s WHERE id = %s AND (battery_at IS NULL OR battery_at < %s)"
)


class DeviceBatteries:
    """Owns one database connection and stores battery reports, waiting out outages."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: AsyncConnection | None = None

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def record(self, report: BatteryReport) -> BatteryOutcome:
        """Store the report if it is newer than the one stored; says what happened."""
        return await until_done(WAIT_FOR)(self._attempt, report)

    async def _connection(self) -> AsyncConnection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await AsyncConnection.connect(self._url, autocommit=True, connect_timeout=5)
        return self._conn

    async def _attempt(self, report: BatteryReport) -> BatteryOutcome:
        try:
            conn = await self._connection()
            cur = await conn.execute(UPDATE_BATTERY, (report.battery, report.at, report.device_id, report.at))
            if cur.rowcount > 0:
                return "applied"
            cur = await conn.execute("SELECT 1 FROM devices WHERE id = %s", (report.device_id,))
            return "stale" if await cur.fetchone() is not None else "unknown_device"
        except DATABASE_DOWN as exc:
            log.warning("database unavailable; the device event waits", error=str(exc))
            await self.close()
            raise
        except MISCONFIGURED as exc:
            log.error("the database refuses the worker (grants or schema); the device event waits", error=str(exc))
            raise
