"""`python -m ingest`: run one bridge process until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal

from prometheus_client import start_http_server

from core.logging import configure_logging
from ingest.bridge import Bridge
from ingest.settings import IngestSettings


async def _main() -> None:
    settings = IngestSettings()
    configure_logging(settings.log_level, settings.log_json)
    start_http_server(settings.ingest_metrics_port, addr=settings.ingest_metrics_host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Bridge(settings).run(stop)


def main() -> None:
    asyncio.run(_main())


if __name__ == "__main__":
    main()
