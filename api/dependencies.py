"""FastAPI dependencies for what the app owns: settings, the database pool, the clock.

They read `app.state`, filled by the lifespan in `api.app`; nothing here connects.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import Request

from api import clients
from api.auth.ratelimit import LoginRateLimiter
from api.db import Pool
from api.security import PasswordWork
from api.settings import ApiSettings


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def get_pool(request: Request) -> Pool:
    pool: Pool = request.app.state.pool
    return pool


def get_login_limiter(request: Request) -> LoginRateLimiter:
    limiter: LoginRateLimiter = request.app.state.login_limiter
    return limiter


def get_password_work(request: Request) -> PasswordWork:
    work: PasswordWork = request.app.state.password_work
    return work


def client_address(request: Request) -> str:
    """The caller's address; X-Forwarded-For counts only from trusted proxies (api.clients)."""
    settings = get_settings(request)
    return clients.client_address(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
        settings.trusted_proxy_networks,
    )


def utc_now() -> datetime:
    return datetime.now(UTC)
