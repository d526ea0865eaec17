"""What the detectors read from the database: device classes for the silence detector (the
`devices` table), and which patients withdrew collection (`consents`).

Reading records carry the device id, not its class (wearable, cuff, ...), and the class decides
how long a device may stay silent. Classes are looked up once per device, in one query per
batch for the devices not yet known, and cached for `ttl_s`. The detectors must not stall when
the database is away (the storage lane waits out an outage; detection need not): a failed
lookup answers from the cache and tries again after `retry_s`, and a device of unknown class
is simply not watched for silence in that batch. A device the table does not know is asked
about again after `unknown_ttl_s` (it may be provisioned meanwhile).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import psycopg
from psycopg import AsyncConnection

from core.logging import get_logger

log = get_logger("streams.detection")


class DeviceClasses:
    def __init__(
        self,
        url: str,
        ttl_s: float = 600.0,
        retry_s: float = 5.0,
        unknown_ttl_s: float = 60.0,
        max_entries: int = 200_000,
    ) -> None:
        self._url = url
        self._ttl = ttl_s
        self._unknown_ttl = min(unknown_ttl_s, ttl_s)
        self._retry = retry_s
        self._max = max_entries
        self._known: dict[str, tuple[str | None, float]] = {}
        self._conn: AsyncConnection | None = None
        self._down_until = 0.0

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def classes_of(self, device_ids: Iterable[str]) -> dict[str, str]:
        """device_id -> device_class for the given devices whose class is known."""
        now = time.monotonic()
        out: dict[str, str] = {}
        missing: list[str] = []
        for device_id in set(device_ids):
            known = self._known.get(device_id)
            if known is None or known[1] <= now:
                missing.append(device_id)
            elif known[0] is not None:
                out[device_id] = known[0]
        if missing and now >= self._down_until:
            try:
                fetched = await asyncio.wait_for(self._fetch(missing), timeout=5)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                self._down_until = now + self._retry
                await self.close()
                log.warning("device classes unavailable; silence not tracked for new devices", error=str(exc))
            else:
                if len(self._known) + len(missing) > self._max:
                    self._known.clear()
                for device_id in missing:
                    device_class = fetched.get(device_id)
                    ttl = self._ttl if device_class is not None else self._unknown_ttl
                    self._known[device_id] = (device_class, now + ttl)
                    if device_class is not None:
                        out[device_id] = device_class
        for device_id in missing:
            # A stale entry beats none while the database is away.
            stale = self._known.get(device_id)
            if device_id not in out and stale is not None and stale[0] is not None:
                out[device_id] = stale[0]
        return out

    async def _fetch(self, device_ids: list[str]) -> dict[str, str]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await AsyncConnection.connect(self._url, autocommit=True, connect_timeout=3)
        cur = await self._conn.execute("SELECT id, device_class FROM devices WHERE id = ANY(%s)", (device_ids,))
        return {str(row[0]): str(row[1]) for row in await cur.fetchall()}


class CollectionConsents:
    """Which patients withdrew collection: they have grants of the collect tier
    ('remote_monitoring') and none of them is open. The bridge refuses their readings, so the
    timer must not judge their devices silent or their measurements missed. A patient with no
    grant at all is not counted as withdrawn (the bridge refuses them too, but tests and
    replays feed records of patients the database does not know, and their silence is real).

    One query per timer pass for the patients it owns. When the database is away the last
    answer stands, for the patients it covered, and the query is tried again after `retry_s`.
    """

    def __init__(self, url: str, retry_s: float = 5.0) -> None:
        self._url = url
        self._retry = retry_s
        self._conn: AsyncConnection | None = None
        self._down_until = 0.0
        self._last: frozenset[str] = frozenset()

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def withdrawn(self, patient_ids: Iterable[str]) -> frozenset[str]:
        ids = sorted(set(patient_ids))
        if not ids:
            return frozenset()
        now = time.monotonic()
        if now >= self._down_until:
            try:
                self._last = await asyncio.wait_for(self._fetch(ids), timeout=5)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                self._down_until = now + self._retry
                await self.close()
                log.warning("consents unavailable; the last known withdrawals stand", error=str(exc))
        return self._last & frozenset(ids)

    async def _fetch(self, patient_ids: list[str]) -> frozenset[str]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await AsyncConnection.connect(self._url, autocommit=True, connect_timeout=3)
        cur = await self._conn.execute(
            "SELECT patient_id FROM consents WHERE patient_id = ANY(%s) AND scope = 'remote_monitoring' "
            "GROUP BY patient_id HAVING bool_and(withdrawn_at IS NOT NULL)",
            (patient_ids,),
        )
        return frozenset(str(row[0]) for row in await cur.fetchall())
