"""Dependency checks behind /readyz: database, Kafka, MQTT broker.

Each check is bounded by a timeout and reports instead of raising, so one slow dependency
cannot hang the probe and the answer names every failing check.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from aiokafka.client import AIOKafkaClient

from api.db import Pool
from api.health.schemas import CheckResult
from api.settings import ApiSettings


async def check_database(pool: Pool, wait_s: float) -> str:
    async with pool.connection(timeout=wait_s) as conn:
        await conn.execute("SELECT 1")
    return "SELECT 1 answered"


async def check_kafka(bootstrap: str, wait_s: float) -> str:
    """Fetch cluster metadata from the bootstrap servers (a real Kafka request, not just TCP)."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(wait_s * 1000))
    try:
        await client.bootstrap()
        brokers = len(client.cluster.brokers())
    finally:
        await client.close()
    return f"metadata from {bootstrap}: {brokers} broker(s)"


async def check_mqtt(host: str, port: int) -> str:
    """A TCP connection to the broker: an MQTT CONNECT would need credentials of its own."""
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return f"TCP connect to {host}:{port}"


async def _timed(check: Callable[[], Awaitable[str]], wait_s: float) -> CheckResult:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(wait_s):
            detail, ok = await check(), True
    except TimeoutError:
        detail, ok = f"no answer within {wait_s:g} s", False
    except Exception as exc:  # any failure of a dependency is a finding, not a crash of the probe
        text = str(exc)
        name = type(exc).__name__
        detail, ok = (text if text.startswith(name) else f"{name}: {text}".removesuffix(": ")), False
    return CheckResult(ok=ok, detail=detail, duration_ms=round((time.perf_counter() - started) * 1000, 1))


async def run_checks(pool: Pool, settings: ApiSettings) -> dict[str, CheckResult]:
    """All checks concurrently; the probe takes as long as the slowest, at most the timeout."""
    timeout = settings.readiness_timeout
    checks: dict[str, Callable[[], Awaitable[str]]] = {
        "database": lambda: check_database(pool, timeout),
        "kafka": lambda: check_kafka(settings.kafka_bootstrap, timeout),
        "mqtt": lambda: check_mqtt(settings.mqtt_host, settings.mqtt_port),
    }
    results = await asyncio.gather(*(_timed(check, timeout) for check in checks.values()))
    return dict(zip(checks, results, strict=True))
