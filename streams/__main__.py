"""`python -m streams`: run one Faust worker until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
from pathlib import Path

from faust import Worker
from prometheus_client import start_http_server

from core.logging import configure_logging
from streams.app import create_app
from streams.changelogs import ensure_changelog_topics
from streams.settings import StreamsSettings


def main() -> None:
    settings = StreamsSettings()
    configure_logging(settings.log_level, settings.log_json)
    Path(settings.streams_data_dir).mkdir(parents=True, exist_ok=True)
    start_http_server(settings.streams_metrics_port, addr=settings.streams_metrics_host)
    app = create_app(settings)
    # A private loop: the Worker below sets up its own event loop.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(ensure_changelog_topics(app, settings.kafka_bootstrap))
    finally:
        loop.close()
    worker = Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    # No terminal spinner: at level WARNING it lowers the root logger to DEBUG, and every debug
    # call of aiokafka and Faust (several per record) then builds a log record.
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
