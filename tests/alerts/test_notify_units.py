"""Notification sender, the parts without I/O: the e-mail carries no health values, the
webhook signature verifies only with its secret, forbidden destinations are refused before
any connection, and the re-check at send time cancels what an acknowledgement stopped."""

from __future__ import annotations

import asyncio
import email
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from alerts.notify.destinations import DestinationRefusedError, resolve
from alerts.notify.messages import (
    AlertFacts,
    BadRecipientError,
    alert_email,
    email_address,
    sign,
    verify,
    webhook_body,
)
from alerts.notify.outbox import Decision, recheck, triage
from alerts.notify.repository import AlertNow, OutboxRow
from alerts.notify.settings import NotifySettings
from alerts.settings import AlertsSettings

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
FACTS = AlertFacts("0b7c", "demo-p001", "spo2_low", "critical", "open", NOW, 1)


def test_email_names_severity_rule_patient_and_link_only() -> None:
    msg = alert_email(
        FACTS,
        to=email_address("dr@example.org"),
        sender="RPM <r@example.org>",
        link_base="https://rpm.example.org/",
        now=NOW,
    )
    parsed = email.message_from_bytes(msg.as_bytes())
    assert (
        " ".join(str(parsed["Subject"]).split())
        == "[RPM] CRITICAL alert: Low oxygen saturation (SpO2) - patient demo-p001 "
        "(escalation tier 1)"
    )
    text = msg.get_body(("plain",))
    assert text is not None
    body = text.get_content()
    assert "https://rpm.example.org/alerts/0b7c" in body
    assert "Test " not in body  # no display name


@pytest.mark.parametrize("garbage", ["", "no-at-sign", "a@b", "x@y.org\r\nBcc: z@w.org", "a b@c.org", "<a@b.org>"])
def test_garbage_addresses_are_refused(garbage: str) -> None:
    with pytest.raises(BadRecipientError):
        email_address(garbage)


def test_the_demo_clinicians_local_address_is_accepted() -> None:
    # infra/demo.py gives the demo clinician demo.clinician@localhost; make run mails it.
    assert email_address("demo.clinician@localhost").domain == "localhost"


def test_signature_verifies_with_its_secret_only() -> None:
    body = webhook_body(FACTS, delivery_id="42", link_base="https://rpm.example.org")
    header = sign("s" * 32, 1_700_000_000, body)
    assert verify("s" * 32, header, body, now=1_700_000_010)
    assert not verify("t" * 32, header, body, now=1_700_000_010)
    assert not verify("s" * 32, header, body + b" ", now=1_700_000_010)
    assert not verify("s" * 32, header, body, now=1_700_001_000)  # too old: a replay


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest", "link-local"),
        ("http://10.0.0.1/", "private"),
        ("http://[::1]:8080/", "loopback"),
        ("http://localhost/", "loopback"),
        ("http://[::ffff:10.0.0.1]/", "private"),
        ("http://evil.example.org/", "allow-list"),
    ],
)
def test_forbidden_destinations_are_refused(url: str, why: str) -> None:
    patterns = ("169.254.169.254", "10.0.0.1", "::1", "localhost", "::ffff:10.0.0.1")
    with pytest.raises(DestinationRefusedError, match=why):
        asyncio.run(resolve(url, patterns=patterns, require_https=False, allow_loopback=False, timeout_s=2))


def _row(state: str, attempts: int = 0, snoozed_until: datetime | None = None) -> OutboxRow:
    return OutboxRow(
        1,
        "0b7c",
        0,
        "email",
        "dr@example.org",
        attempts,
        "demo-p001",
        "spo2_low",
        "critical",
        state,
        NOW,
        snoozed_until,
        None,
        None,
        None,
        False,
    )


def test_acknowledged_cancels_snoozed_defers_exhausted_fails() -> None:
    settings = NotifySettings(notify_max_attempts=3)
    assert triage(_row("acknowledged"), NOW, settings).action == "cancel"
    assert triage(_row("resolved"), NOW, settings).action == "cancel"
    later = NOW + timedelta(minutes=30)
    assert triage(_row("snoozed", snoozed_until=later), NOW, settings).until == later
    assert triage(_row("open", attempts=3), NOW, settings).action == "fail"
    assert triage(_row("open", attempts=2), NOW, settings).action == "send"


def test_recheck_under_the_lock_cancels_acknowledged_and_defers_snoozed() -> None:
    later = NOW + timedelta(minutes=5)
    assert recheck(AlertNow("acknowledged", None), NOW).action == "cancel"
    assert recheck(AlertNow("resolved", None), NOW).action == "cancel"
    assert recheck(AlertNow("snoozed", later), NOW) == Decision("defer", later, "alert snoozed before the send")
    assert recheck(AlertNow("snoozed", NOW - timedelta(seconds=1)), NOW).action == "send"  # snooze over
    assert recheck(AlertNow("open", None), NOW).action == "send"
    # The patient withdrew sharing with the care team after the row was queued (ADR 0024).
    assert recheck(AlertNow("open", None, shared=False), NOW) == Decision(
        "cancel", None, "the patient no longer shares with the care team"
    )


def test_production_refuses_loopback_webhooks_and_placeholder_smtp_passwords() -> None:
    with pytest.raises(ValidationError, match="webhook_allow_loopback"):
        NotifySettings(environment="production", webhook_allow_loopback=True)
    for environment in ("test", "production"):
        for password in (None, "change-me", ""):
            with pytest.raises(ValidationError, match="smtp_password"):
                NotifySettings(environment=environment, smtp_username="relay-user", smtp_password=password)
    assert NotifySettings(environment="production", smtp_username="relay-user", smtp_password="s3cret-relay-pw")
    assert NotifySettings(environment="development", smtp_username="relay-user", smtp_password="change-me")
    assert not NotifySettings().webhook_allow_loopback  # loopback is refused unless a setting allows it


def test_the_alert_service_settings_hold_the_notification_settings() -> None:
    names = set(AlertsSettings.model_fields)
    assert set(NotifySettings.model_fields) <= names
    with pytest.raises(ValidationError, match="notify_concurrency"):
        AlertsSettings(notify_concurrency=10, db_pool_max=8)
