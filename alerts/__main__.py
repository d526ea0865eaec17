"""`python -m alerts`: run one alert service process until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal

from prometheus_client import start_http_server

from alerts.app import AlertService
from alerts.settings import AlertsSettings
from core.logging import configure_logging


async def _main() -> None:
    settings = AlertsSettings()
    configure_logging(settings.log_level, settings.log_json)
    start_http_server(settings.alerts_metrics_port, addr=settings.alerts_metrics_host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await AlertService(settings).run(stop)


def main() -> None:
    asyncio.run(_main())


if __name__ == "__main__":
    main()
