"""The local stack runner: our own Mosquitto, Kafka-protocol broker (Tansu) and
PostgreSQL+TimescaleDB on their own ports, plus the platform processes, with every piece
of state (data, logs, pid files, generated credentials) in one state directory.

The same runner starts the services for the test suite (on free ports, in a temporary
state directory). Each start waits for health; when a component fails, the error names
it, says why and shows the tail of its log. Stop ends exactly the processes it started
(pid files, checked against the process's command line).

One module per job: `config` (state directory, ports, credentials, the environment handed
to our processes), `supervisor` (spawn, wait, stop), `services` (Mosquitto, Tansu,
PostgreSQL, SMTP, Prometheus), `platform` (our processes), `probes` (health checks and
metrics), `runner` (the `Stack` that ties them together), `settings` (the runner's own
RPM_ settings).
"""

from infra.stack.config import (
    DB_ROLES,
    PLATFORM_COMPONENTS,
    ROOT,
    SERVICE_COMPONENTS,
    Ports,
    Secrets,
)
from infra.stack.probes import (
    http_status,
    metric_value,
    metric_values,
    port_answers,
    port_is_free,
    progress_probe,
    smtp_greets,
)
from infra.stack.runner import Stack
from infra.stack.services import create_topics
from infra.stack.settings import StackSettings
from infra.stack.supervisor import StackError, tail

__all__ = [
    "DB_ROLES",
    "PLATFORM_COMPONENTS",
    "ROOT",
    "SERVICE_COMPONENTS",
    "Ports",
    "Secrets",
    "Stack",
    "StackError",
    "StackSettings",
    "create_topics",
    "http_status",
    "metric_value",
    "metric_values",
    "port_answers",
    "port_is_free",
    "progress_probe",
    "smtp_greets",
    "tail",
]
