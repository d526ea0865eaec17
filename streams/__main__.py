"""`python -m streams`: run one Faust worker until SIGTERM/SIGINT."""

from __future__ import annotations

from pathlib import Path

from faust import Worker
from prometheus_client import start_http_server

from core.logging import configure_logging
from streams.app import create_app
from streams.settings import StreamsSettings


def main() -> None:
    settings = StreamsSettings()
    configure_logging(settings.log_level, settings.log_json)
    Path(settings.streams_data_dir).mkdir(parents=True, exist_ok=True)
    start_http_server(settings.streams_metrics_port, addr=settings.streams_metrics_host)
    app = create_app(settings)
    worker = Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
