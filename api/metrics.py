"""Prometheus metrics of the API (`rpm_api_*`), served on their own port (RPM_API_METRICS_PORT,
`python -m api` starts it) like every other process's, never on the API's own port: the API
port stays what clients may reach, and the metrics need neither auth nor an OpenAPI entry.

Requests are counted by route template (`/api/v1/patients/{patient_id}/summary`), never by
the raw path, so no patient or alert id becomes a label; a request no route matched counts
as `unmatched`, the static files as `/static`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUESTS = Counter(
    "rpm_api_requests",
    "HTTP requests answered, by route template, method and status class (2xx, 3xx, 4xx, 5xx)",
    ["route", "method", "status_class"],
)
REQUEST_SECONDS = Histogram(
    "rpm_api_request_duration_seconds",
    "From request start to the last byte of the answer, by route template, method and status class "
    "(an SSE stream's duration is how long the client stayed)",
    ["route", "method", "status_class"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
IN_PROGRESS = Gauge("rpm_api_requests_in_progress", "HTTP requests being answered now (SSE streams included)")
SSE_CLIENTS = Gauge("rpm_api_sse_clients", "Clients of the live alert stream (SSE) this process serves now")
TIME_TO_ACKNOWLEDGE = Histogram(
    "rpm_api_alert_time_to_acknowledge_seconds",
    "From an alert's opening to a person acknowledging it, by rule and severity",
    ["rule", "severity"],
    buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400),
)


def observe_acknowledged(rule: str, severity: str, opened_at: datetime, acknowledged_at: datetime | None) -> None:
    """An acknowledgement committed: how long the alert had waited for it."""
    if acknowledged_at is not None:
        waited = (acknowledged_at - opened_at).total_seconds()
        TIME_TO_ACKNOWLEDGE.labels(rule=rule, severity=severity).observe(max(0.0, waited))


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _route_of(scope: Scope) -> str:
    """The matched route's template with the prefix it was included under. FastAPI keeps an
    included router's routes without their prefix (`route.path` is `/patients/{patient_id}`), so
    the prefix is the part of the request path before the piece the route's pattern matches."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    pattern = getattr(route, "path_regex", None)
    if isinstance(template, str):
        path: str = scope.get("path", "")
        if pattern is not None:
            for at in [i for i, char in enumerate(path) if char == "/"]:
                if pattern.match(path[at:]):
                    return path[:at] + template
        return template
    if scope.get("root_path", "").endswith("/static") or scope.get("path", "").startswith("/static/"):
        return "/static"
    return "unmatched"


class RequestMetricsMiddleware:
    """Pure ASGI (a streaming answer, the SSE stream, passes through untouched): counts and
    times every HTTP request once it has ended, labelled by the route the router matched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # a crash before the answer started is answered 500 by the server

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, sending)
        finally:
            IN_PROGRESS.dec()
            method = scope["method"] if scope["method"] in METHODS else "other"
            labels = {"route": _route_of(scope), "method": method, "status_class": f"{status // 100}xx"}
            REQUESTS.labels(**labels).inc()
            REQUEST_SECONDS.labels(**labels).observe(time.perf_counter() - started)


__all__ = ["SSE_CLIENTS", "RequestMetricsMiddleware", "observe_acknowledged"]
