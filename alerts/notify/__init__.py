"""Notifications: the sender that drains the outbox table `notifications` (e-mail through
SMTP, signed webhooks). ADR 0019 says why and how; docs/operations.md, "Notifications", how
to run and check it.

For the alerts process (`python -m alerts`): its settings class inherits `NotifySettings`
(every `RPM_SMTP_*`, `RPM_NOTIFY_*`, `RPM_WEBHOOK_*` setting), and its startup runs the
sender as a supervised service on the process's pool (the `rpm_alerts` login, granted what
the sender uses in core/migrations/0008_notifications.sql)::

    from alerts.notify import run_outbox
    supervisor.spawn(run_outbox(pool, settings, clock=clock), name="notify-outbox")

`run_outbox` never returns; cancel it to stop (the supervisor does on shutdown). Several
processes may run it at once: each row is sent by one of them.
"""

from alerts.notify.outbox import OutboxSender, run_outbox, triage, utc_now
from alerts.notify.settings import NotifySettings

__all__ = ["NotifySettings", "OutboxSender", "run_outbox", "triage", "utc_now"]
