"""The stream worker's timer and a withdrawal of collection (ADR 0024): a patient who withdrew
the collect tier is not judged silent or behind on measurements (the bridge refuses their
readings, so the silence is their choice), while a patient still collecting is; giving collection
again brings the timer back. The pipeline runs with in-memory tables and sinks, and reads the
consents from the real database as the worker's own login."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import psycopg

from core.rules import Rule
from core.wire import Reading, detection_decoder, encode
from infra.stack import Stack
from streams.careplans.service import PlanBook
from streams.dead_letters import DeadLetters
from streams.detection.pipeline import DetectionPipeline
from streams.detection.repository import CollectionConsents
from streams.detection.state_store import StateStore
from tests.helpers import create_patient
from tests.streams.support import batch

T0 = (datetime.now(UTC) - timedelta(days=1)).replace(hour=6, minute=0, second=0, microsecond=0)


class Wearables:
    async def classes_of(self, device_ids: Iterable[str]) -> dict[str, str]:
        return dict.fromkeys(device_ids, "wearable")


def readings(patient_id: str, offset: int) -> list[tuple[int, int, bytes]]:
    """Ten minutes of normal SpO2 from the patient's wearable, one record a minute."""
    return [
        (1, offset + i, encode(batch(patient_id, [Reading("spo2", 97, T0 + timedelta(minutes=i))], seq=i)))
        for i in range(10)
    ]


def silent_raises(published: list[bytes]) -> dict[str, list[Rule]]:
    out: dict[str, list[Rule]] = {}
    for value in published:
        d = detection_decoder.decode(value)
        if d.rule in (Rule.DEVICE_SILENT_WARN, Rule.DEVICE_SILENT_URGENT) and d.kind == "raise":
            out.setdefault(d.patient_id, []).append(d.rule)
    return out


def test_the_timer_skips_patients_who_withdrew_collection(stack: Stack, db: psycopg.Connection) -> None:
    collecting, withdrawn = create_patient(db), create_patient(db)
    published: list[bytes] = []

    async def run() -> dict[str, list[Rule]]:
        async def send_changelog(key: bytes, value: bytes, partition: int) -> asyncio.Future[None]:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            fut.set_result(None)
            return fut

        async def publish(key: bytes, value: bytes) -> asyncio.Future[None]:
            published.append(value)
            return await send_changelog(key, value, 0)

        async def dead_letter(value: bytes) -> None:
            raise AssertionError(f"nothing should be dead-lettered: {value!r}")

        consents = CollectionConsents(stack.db_url("streams"))
        pipeline = DetectionPipeline(
            states=StateStore({}, send_changelog),
            plans=PlanBook({}),
            devices=Wearables(),
            publish=publish,
            dead_letters=DeadLetters(dead_letter),
            collection=consents,
        )
        try:
            await pipeline.process([*readings(collecting, 0), *readings(withdrawn, 100)])
            db.execute(
                "UPDATE consents SET withdrawn_at = now() WHERE patient_id = %s AND withdrawn_at IS NULL", (withdrawn,)
            )
            later = T0 + timedelta(hours=2)
            await pipeline.run_due(later, frozenset({1}))
            first = silent_raises(published)
            # Collection given again: the timer judges the patient from the next pass on.
            db.execute("INSERT INTO consents (patient_id, granted_at) VALUES (%s, now())", (withdrawn,))
            await pipeline.run_due(later + timedelta(minutes=1), frozenset({1}))
            return first
        finally:
            await consents.close()

    first = asyncio.run(run())
    assert first.get(collecting), "the patient still collecting is judged silent"
    assert withdrawn not in first, "no silence alert for a patient who withdrew collection"
    assert silent_raises(published).get(withdrawn), "judged again once collection is given again"
