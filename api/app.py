"""The app factory: routers, problem handlers, and a lifespan that owns the database pool.

Nothing connects at import time; `create_app()` only wires things up, the pool opens when
the server starts the app and closes when it stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from api.access import endpoints as access_endpoints
from api.access.service import forget_break_glass
from api.accesslog import endpoints as access_log_endpoints
from api.admin import endpoints as admin_endpoints
from api.alerts import endpoints as alert_endpoints
from api.alerts.stream import AlertEventHub
from api.audit.rejections import handle_validation
from api.auth import endpoints as auth_endpoints
from api.auth.ratelimit import LoginRateLimiter
from api.careplans import endpoints as careplan_endpoints
from api.careplans.publisher import CarePlanPublisher
from api.careplans.service import WhatIfLimits
from api.checkins import endpoints as checkin_endpoints
from api.checkins.publisher import ReadingsPublisher
from api.consents import endpoints as consent_endpoints
from api.devices import endpoints as device_endpoints
from api.headers import SecurityHeadersMiddleware
from api.health import endpoints as health_endpoints
from api.inputs import screen_inputs
from api.metrics import RequestMetricsMiddleware
from api.observations import endpoints as observation_endpoints
from api.pages import access_log as access_log_page
from api.pages import careplan as careplan_page
from api.pages import consent as consent_page
from api.pages import endpoints as page_endpoints
from api.pages import reminders as reminders_page
from api.pages import summary as summary_page
from api.patients import endpoints as patient_endpoints
from api.portal import endpoints as portal_endpoints
from api.problems import install_problem_handlers
from api.reminders import endpoints as reminder_endpoints
from api.security import PasswordWork, dummy_hash
from api.settings import ApiSettings
from core.clients.db import create_pool
from core.logging import get_logger

API_PREFIX = "/api/v1"

log = get_logger(__name__)


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """Build the API; settings come from the environment (RPM_*) unless given."""
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The dummy hash for unknown usernames costs one argon2 run: pay it now, off the loop,
        # rather than on the first login.
        await run_in_threadpool(dummy_hash)
        pool = create_pool(
            settings.database_url.get_secret_value(),
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            name="api",
        )
        # wait=False: the process comes up (and /healthz answers) even while the database
        # is away; /readyz reports it and requests answer 503 until it is back.
        await pool.open(wait=False)
        app.state.pool = pool
        # Check-ins go to Kafka like device readings; it connects on first use.
        publisher = app.state.readings_publisher = ReadingsPublisher(
            settings.kafka_bootstrap, idempotent=settings.kafka_idempotent_producer
        )
        # Care plans go to their compacted topic (api/careplans); also connects on first use.
        plans = app.state.care_plan_publisher = CarePlanPublisher(
            settings.kafka_bootstrap, idempotent=settings.kafka_idempotent_producer
        )
        app.state.what_if_limits = WhatIfLimits(
            max_readings=settings.what_if_max_readings,
            timeout_s=settings.what_if_timeout,
            slots=asyncio.Semaphore(settings.what_if_concurrency),
        )
        # One LISTEN connection per process fans alert events out to its SSE clients (ADR 0020).
        hub = app.state.alert_hub = AlertEventHub(settings.database_url.get_secret_value(), pool)
        hub.start()
        log.info("api started", environment=settings.environment)
        try:
            yield
        finally:
            await hub.stop()
            await plans.close()
            await publisher.close()
            await pool.close()
            log.info("api stopped")

    app = FastAPI(
        title="RPM platform API",
        version="1",
        summary="Remote patient monitoring: patients' readings for their care teams and themselves",
        lifespan=lifespan,
        # Every route's path, query and body are screened before its own parameters (api.inputs).
        # Each request starts with no break-glass access noted (api.access.service).
        dependencies=[Depends(screen_inputs), Depends(forget_break_glass)],
        # ReDoc needs web workers and web fonts from elsewhere; /docs is enough under a strict CSP.
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.login_limiter = LoginRateLimiter(
        max_per_user_and_client=settings.login_max_failures_per_user_and_client,
        max_per_client=settings.login_max_failures_per_ip,
        max_per_user=settings.login_max_failures_per_user,
        window_seconds=settings.login_failure_window.total_seconds(),
        max_delay_seconds=settings.login_max_delay.total_seconds(),
    )
    app.state.password_work = PasswordWork(settings.password_hash_concurrency)
    install_problem_handlers(app)
    # Validation failures are audited when the caller is known (replaces the plain handler).
    app.add_exception_handler(RequestValidationError, handle_validation)
    # Outermost: crashes answered by the problem middleware get the headers too.
    app.add_middleware(SecurityHeadersMiddleware, trusted_proxies=settings.trusted_proxy_networks)
    # Outermost of all: every request counted by route template with the status it ended with
    # (api/metrics.py; the metrics themselves are served on RPM_API_METRICS_PORT, not here).
    app.add_middleware(RequestMetricsMiddleware)
    app.include_router(health_endpoints.router)
    app.include_router(auth_endpoints.router, prefix=API_PREFIX)
    app.include_router(observation_endpoints.router, prefix=API_PREFIX)
    app.include_router(checkin_endpoints.router, prefix=API_PREFIX)
    app.include_router(careplan_endpoints.router, prefix=API_PREFIX)
    app.include_router(device_endpoints.router, prefix=API_PREFIX)
    app.include_router(admin_endpoints.router, prefix=API_PREFIX)
    app.include_router(access_endpoints.router, prefix=API_PREFIX)
    app.include_router(alert_endpoints.router, prefix=API_PREFIX)
    app.include_router(patient_endpoints.router, prefix=API_PREFIX)
    app.include_router(consent_endpoints.router, prefix=API_PREFIX)
    app.include_router(portal_endpoints.router, prefix=API_PREFIX)
    app.include_router(access_log_endpoints.router, prefix=API_PREFIX)
    app.include_router(reminder_endpoints.router, prefix=API_PREFIX)
    # The clinician's pages (ADR 0022) and their vendored static files.
    app.include_router(page_endpoints.router)
    app.include_router(careplan_page.router)
    app.include_router(summary_page.router)
    app.include_router(access_log_page.router)
    app.include_router(consent_page.router)
    app.include_router(reminders_page.router)
    app.mount("/static", StaticFiles(directory=page_endpoints.STATIC_DIR), name="static")
    return app
