"""`python -m api`: serve the API with uvicorn on RPM_API_HOST:RPM_API_PORT."""

from __future__ import annotations

import logging

import uvicorn
from prometheus_client import start_http_server

from api.app import create_app
from api.settings import ApiSettings
from core.logging import configure_logging


def main() -> None:
    settings = ApiSettings()
    configure_logging(settings.log_level, json=settings.log_json)
    # psycopg's pool logs every connection checkout at INFO: keep its warnings, drop the chatter.
    logging.getLogger("psycopg.pool").setLevel(logging.WARNING)
    # Metrics on their own port, like every process's (api/metrics.py says why).
    start_http_server(settings.api_metrics_port, addr=settings.api_metrics_host)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        # X-Forwarded-* are judged by the app itself, against RPM_API_TRUSTED_PROXIES (api.clients).
        proxy_headers=False,
        # Our structlog/stdlib logging is configured above; uvicorn must not replace it.
        log_config=None,
        server_header=False,
        # uvloop's event loop and httptools' parser: about a tenth off every request's time
        # against asyncio and h11 (docs/benchmarks/api.md).
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
