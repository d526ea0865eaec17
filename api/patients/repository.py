"""SQL of the patients API: the care teams' patients and their names, the alert figures that
order them, care plans, latest readings, devices with their last reading and battery, the
readings adherence is judged on, and time_bucket rollups. Every query is bounded by patient
ids and a time range, down the (patient_id, metric, ts) unique index of `observations`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from psycopg import AsyncCursor
from psycopg.rows import class_row

from api.alerts.repository import ALERT_COLUMNS, SEVERITY_RANK, alert_from_row, alert_read
from api.alerts.schemas import AlertRead
from api.db import Conn
from api.patients.schemas import RollupBucket
from core.wire import Reading


async def team_patients(conn: Conn, user_id: uuid.UUID) -> dict[str, str]:
    """Id -> name of the patients on the user's care teams who share with them (ADR 0024)."""
    cur = await conn.execute(
        """
        SELECT DISTINCT p.id, p.display_name
        FROM care_team_members AS m
        JOIN care_team_patients_shared AS t ON t.care_team_id = m.care_team_id
        JOIN patients AS p ON p.id = t.patient_id
        WHERE m.user_id = %s
        """,
        (user_id,),
    )
    return {str(row[0]): str(row[1]) for row in await cur.fetchall()}


async def all_patients(conn: Conn) -> dict[str, str]:
    """Id -> name of every patient (an admin's list)."""
    cur = await conn.execute("SELECT id, display_name FROM patients")
    return {str(row[0]): str(row[1]) for row in await cur.fetchall()}


async def patient_name(conn: Conn, patient_id: str) -> str | None:
    cur = await conn.execute("SELECT display_name FROM patients WHERE id = %s", (patient_id,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


_ALERT_FIGURES: Final = (
    "SELECT DISTINCT ON (patient_id) patient_id, count(*) OVER (PARTITION BY patient_id), "  # noqa: S608
    f"{SEVERITY_RANK}, id, rule, severity, state, title, opened_at FROM alerts "
    "WHERE patient_id = ANY(%s) AND state <> 'resolved' "
    f"ORDER BY patient_id, {SEVERITY_RANK} DESC, opened_at, id"
)


@dataclass(frozen=True, slots=True)
class AlertFigures:
    open_alerts: int
    rank: int  # severity rank of the worst unresolved alert (-1 without one)
    worst: dict[str, Any] | None


async def alert_figures(conn: Conn, patient_ids: list[str]) -> dict[str, AlertFigures]:
    """Per patient with unresolved alerts: how many, and the worst (most severe, then oldest)."""
    cur = await conn.execute(_ALERT_FIGURES, (patient_ids,))
    out = {}
    for row in await cur.fetchall():
        worst = {
            "id": row[3],
            "rule": row[4],
            "severity": row[5],
            "state": row[6],
            "title": row[7],
            "opened_at": row[8],
        }
        out[str(row[0])] = AlertFigures(int(row[1]), int(row[2]), worst)
    return out


async def care_plans(conn: Conn, patient_ids: list[str]) -> dict[str, Any]:
    """The stored plan (JSON) of each patient that has one."""
    cur = await conn.execute("SELECT patient_id, plan FROM care_plans WHERE patient_id = ANY(%s)", (patient_ids,))
    return {row[0]: row[1] for row in await cur.fetchall()}


# The latest reading of each (patient, metric) taken after a time: one index probe per pair,
# newest first.
_LATEST: Final = """
    SELECT p.patient_id, m.metric, last.value, last.ts
    FROM unnest(%s::text[]) AS p (patient_id)
    CROSS JOIN unnest(%s::text[]) AS m (metric)
    CROSS JOIN LATERAL (
        SELECT o.value, o.ts FROM observations AS o
        WHERE o.patient_id = p.patient_id AND o.metric = m.metric AND o.ts > %s
        ORDER BY o.ts DESC LIMIT 1
    ) AS last
"""
_TRENDS: Final = """
    SELECT metric, time_bucket('1 hour', ts) AS start, count(*), avg(value), min(value), max(value)
    FROM observations
    WHERE patient_id = %s AND metric = ANY(%s) AND ts >= %s AND ts < %s
    GROUP BY 1, 2
    ORDER BY 1, 2
"""
_UNRESOLVED: Final = (
    f"SELECT {ALERT_COLUMNS} FROM alerts WHERE patient_id = %s AND state <> 'resolved' "  # noqa: S608
    f"ORDER BY {SEVERITY_RANK} DESC, opened_at, id LIMIT %s"
)
# Each device bound now (not revoked) with its last reading after a time (one probe per
# (device, metric) down the unique index), its battery, and the distinct hours since another
# time that hold one of its readings.
_DEVICES_WITH_HOURS: Final = """
    SELECT b.patient_id, b.device_id, d.device_class, last.ts, d.battery, d.battery_at, hours.n
    FROM device_bindings AS b
    JOIN devices AS d ON d.id = b.device_id
    LEFT JOIN LATERAL (
        SELECT max(o.ts) AS ts
        FROM unnest(%s::text[]) AS m (metric)
        CROSS JOIN LATERAL (
            SELECT o.ts FROM observations AS o
            WHERE o.patient_id = b.patient_id AND o.metric = m.metric
              AND o.device_id = b.device_id AND o.ts > %s
            ORDER BY o.ts DESC LIMIT 1
        ) AS o
    ) AS last ON true
    CROSS JOIN LATERAL (
        SELECT count(DISTINCT time_bucket('1 hour', o.ts)) AS n FROM observations AS o
        WHERE o.patient_id = b.patient_id AND o.device_id = b.device_id AND o.ts >= %s
    ) AS hours
    WHERE b.patient_id = ANY(%s) AND b.valid_to IS NULL AND d.revoked_at IS NULL
    ORDER BY b.patient_id, b.device_id
"""
_SCHEDULED: Final = """
    SELECT o.metric, o.value, o.ts, o.dose_id
    FROM observations AS o
    WHERE o.patient_id = %(patient)s AND o.ts >= %(start)s AND o.ts < %(end)s
      AND o.metric IN (
        SELECT m ->> 'metric' FROM care_plans AS c,
               jsonb_array_elements(coalesce(c.plan -> 'measurements', '[]'::jsonb)) AS m
        WHERE c.patient_id = %(patient)s
        UNION
        SELECT 'medication_taken' FROM care_plans AS c
        WHERE c.patient_id = %(patient)s AND jsonb_array_length(coalesce(c.plan -> 'medications', '[]'::jsonb)) > 0
      )
    ORDER BY o.ts
"""


async def latest_values(
    conn: Conn, patient_ids: list[str], metrics: list[str], since: datetime
) -> dict[tuple[str, str], tuple[float, datetime]]:
    """The latest reading of each (patient, metric) taken after `since`."""
    cur = await conn.execute(_LATEST, (patient_ids, metrics, since))
    return {(row[0], row[1]): (float(row[2]), row[3]) for row in await cur.fetchall()}


@dataclass(frozen=True, slots=True)
class DeviceSeen:
    patient_id: str
    device_id: str
    device_class: str
    last_reading_at: datetime | None
    battery: float | None
    battery_at: datetime | None


async def device_last_readings(
    conn: Conn, patient_ids: list[str], metrics: list[str], since: datetime
) -> list[DeviceSeen]:
    """Each device bound to the patients now (not revoked), with its last reading after `since`.

    One probe per (device, metric) down the (patient_id, metric, ts) unique index, newest
    first: a silent device costs a short walk back to `since`, never a scan of the window's
    readings of every patient."""
    cur = await conn.execute(
        """
        SELECT b.patient_id, b.device_id, d.device_class, last.ts, d.battery, d.battery_at
        FROM device_bindings AS b
        JOIN devices AS d ON d.id = b.device_id
        LEFT JOIN LATERAL (
            SELECT max(o.ts) AS ts
            FROM unnest(%s::text[]) AS m (metric)
            CROSS JOIN LATERAL (
                SELECT o.ts FROM observations AS o
                WHERE o.patient_id = b.patient_id AND o.metric = m.metric
                  AND o.device_id = b.device_id AND o.ts > %s
                ORDER BY o.ts DESC LIMIT 1
            ) AS o
        ) AS last ON true
        WHERE b.patient_id = ANY(%s) AND b.valid_to IS NULL AND d.revoked_at IS NULL
        ORDER BY b.patient_id, b.device_id
        """,
        (metrics, since, patient_ids),
    )
    return [
        DeviceSeen(row[0], row[1], row[2], row[3], None if row[4] is None else float(row[4]), row[5])
        for row in await cur.fetchall()
    ]


async def scheduled_readings(
    conn: Conn, pairs: list[tuple[str, str]], start: datetime, end: datetime
) -> dict[str, list[Reading]]:
    """Readings of the given (patient, metric) pairs in [start, end), by patient, oldest first."""
    if not pairs:
        return {}
    cur = await conn.execute(
        """
        SELECT o.patient_id, o.metric, o.value, o.ts, o.dose_id
        FROM unnest(%s::text[], %s::text[]) AS s (patient_id, metric)
        JOIN observations AS o ON o.patient_id = s.patient_id AND o.metric = s.metric
        WHERE o.ts >= %s AND o.ts < %s
        ORDER BY o.ts
        """,
        ([p for p, _ in pairs], [m for _, m in pairs], start, end),
    )
    out: dict[str, list[Reading]] = {}
    for row in await cur.fetchall():
        out.setdefault(row[0], []).append(Reading(row[1], float(row[2]), row[3], row[4]))
    return out


async def rollup(
    conn: Conn, patient_id: str, metric: str, width: timedelta, start: datetime, end: datetime
) -> list[RollupBucket]:
    """time_bucket rollup of one metric in [start, end), buckets that hold readings, oldest first."""
    async with conn.cursor(row_factory=class_row(RollupBucket)) as cur:
        await cur.execute(
            """
            SELECT time_bucket(%s, ts) AS start, count(*) AS n, avg(value) AS mean, min(value) AS min,
                   max(value) AS max
            FROM observations
            WHERE patient_id = %s AND metric = %s AND ts >= %s AND ts < %s
            GROUP BY 1
            ORDER BY 1
            """,
            (width, patient_id, metric, start, end),
        )
        return await cur.fetchall()


# --- the summary's reads, sent together (pipeline mode) ----------------------------------------
# Each `send_*` sends one query and returns its cursor without waiting; inside
# `conn.pipeline()` they travel to the server together, and the `*_of` functions read the
# answers afterwards. One round trip for the whole summary instead of one per query.
async def send_patient(conn: Conn, patient_id: str) -> AsyncCursor[Any]:
    return await conn.execute(
        "SELECT p.display_name, c.plan FROM patients AS p LEFT JOIN care_plans AS c ON c.patient_id = p.id "
        "WHERE p.id = %s",
        (patient_id,),
    )


async def patient_of(cur: AsyncCursor[Any]) -> tuple[str, Any]:
    row = await cur.fetchone()
    return ("", None) if row is None else (str(row[0]), row[1])


async def send_latest(conn: Conn, patient_id: str, metrics: list[str], since: datetime) -> AsyncCursor[Any]:
    return await conn.execute(_LATEST, ([patient_id], metrics, since))


async def latest_of(cur: AsyncCursor[Any]) -> dict[str, tuple[float, datetime]]:
    return {row[1]: (float(row[2]), row[3]) for row in await cur.fetchall()}


async def send_trends(
    conn: Conn, patient_id: str, metrics: list[str], start: datetime, end: datetime
) -> AsyncCursor[Any]:
    return await conn.execute(_TRENDS, (patient_id, metrics, start, end))


async def trends_of(cur: AsyncCursor[Any]) -> dict[str, list[RollupBucket]]:
    out: dict[str, list[RollupBucket]] = {}
    # model_construct: the row's types are known (24 buckets per vital, validation was the
    # cost); the bucket start goes to UTC as UtcDatetime would.
    for row in await cur.fetchall():
        out.setdefault(row[0], []).append(
            RollupBucket.model_construct(
                start=row[1].astimezone(UTC), n=int(row[2]), mean=float(row[3]), min=float(row[4]), max=float(row[5])
            )
        )
    return out


async def send_unresolved_alerts(conn: Conn, patient_id: str, limit: int) -> AsyncCursor[Any]:
    return await conn.execute(_UNRESOLVED, (patient_id, limit))


async def alerts_of(cur: AsyncCursor[Any]) -> list[AlertRead]:
    return [alert_read(alert_from_row(row)) for row in await cur.fetchall()]


async def send_devices(
    conn: Conn, patient_id: str, metrics: list[str], since: datetime, hours_since: datetime
) -> AsyncCursor[Any]:
    return await conn.execute(_DEVICES_WITH_HOURS, (metrics, since, hours_since, [patient_id]))


async def devices_of(cur: AsyncCursor[Any]) -> tuple[list[DeviceSeen], dict[str, int]]:
    """The devices, and per device the distinct hours since `hours_since` holding a reading."""
    devices, hours = [], {}
    for row in await cur.fetchall():
        devices.append(DeviceSeen(row[0], row[1], row[2], row[3], None if row[4] is None else float(row[4]), row[5]))
        hours[str(row[1])] = int(row[6])
    return devices, hours


async def send_scheduled(conn: Conn, patient_id: str, start: datetime, end: datetime) -> AsyncCursor[Any]:
    """Readings of the metrics the patient's stored plan schedules (measurements, and medication
    events when it schedules doses), in [start, end)."""
    return await conn.execute(_SCHEDULED, {"patient": patient_id, "start": start, "end": end})


async def scheduled_of(cur: AsyncCursor[Any]) -> list[Reading]:
    return [Reading(row[0], float(row[1]), row[2], row[3]) for row in await cur.fetchall()]


async def hourly_trends(
    conn: Conn, patient_id: str, metrics: list[str], start: datetime, end: datetime
) -> dict[str, list[RollupBucket]]:
    """Hourly buckets of several metrics in [start, end), by metric, oldest first."""
    return await trends_of(await send_trends(conn, patient_id, metrics, start, end))
