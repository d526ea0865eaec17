"""What a notification says, built from plain data (no I/O): the alert e-mail and the
webhook's signed JSON body.

Privacy (ADR 0019): e-mail is not a secure channel, and a webhook's receiver is another
system. Both carry what a clinician needs to decide to open the inbox (severity, the rule in
words, the pseudonymous patient id, when it opened, a link) and no health value, no name,
no free text: the alert's title and evidence may hold readings, so they stay in the inbox,
behind a login.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Final

from core.rules import Rule

RULE_WORDS: Final[dict[str, str]] = {
    Rule.SPO2_LOW: "Low oxygen saturation (SpO2)",
    Rule.HEART_RATE_HIGH: "High heart rate",
    Rule.HEART_RATE_LOW: "Low heart rate",
    Rule.RESP_RATE_HIGH: "High respiration rate",
    Rule.TEMP_HIGH: "High body temperature",
    Rule.NEWS2_LOW: "NEWS2 low band (1-4)",
    Rule.NEWS2_SINGLE_PARAMETER: "NEWS2: a single parameter scored 3",
    Rule.NEWS2_MEDIUM: "NEWS2 medium band (5-6)",
    Rule.NEWS2_HIGH: "NEWS2 high band (7 or more)",
    Rule.BP_CRISIS_CONFIRMED: "Blood pressure crisis, confirmed by a repeat reading",
    Rule.BP_CRISIS_UNCONFIRMED: "Blood pressure crisis on one reading: re-measure",
    Rule.HF_WEIGHT_GAIN_1D: "Heart failure: weight gain within 1 day",
    Rule.HF_WEIGHT_GAIN_3D: "Heart failure: weight gain within 3 days",
    Rule.HF_WEIGHT_GAIN_7D: "Heart failure: weight gain within 7 days",
    Rule.GLUCOSE_LOW_L1: "Low glucose (level 1)",
    Rule.GLUCOSE_LOW_L2: "Low glucose (level 2)",
    Rule.GLUCOSE_HIGH: "High glucose",
    Rule.BASELINE_DEVIATION: "Deviation from the patient's own baseline",
    Rule.MEASUREMENT_MISSED: "Scheduled measurement missed",
    Rule.DOSE_MISSED: "Medication dose missed",
    Rule.DEVICE_SILENT_WARN: "Device silent",
    Rule.DEVICE_SILENT_URGENT: "Device silent for long",
}

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
SIGNATURE_HEADER: Final = "X-RPM-Signature"
DELIVERY_HEADER: Final = "X-RPM-Delivery"
EVENT_HEADER: Final = "X-RPM-Event"
WEBHOOK_EVENT: Final = "alert.notification"


class BadRecipientError(ValueError):
    """An e-mail address the sender will not use (the outbox row is marked failed)."""


def plain(value: str, cap: int = 200) -> str:
    """One line of text safe for a header or a log: no control characters, capped."""
    text = _CONTROL.sub("?", value.encode("utf-8", "replace").decode("utf-8"))
    return text if len(text) <= cap else text[: cap - 1] + "…"


def rule_in_words(rule: str) -> str:
    return RULE_WORDS.get(rule) or plain(rule.replace("_", " ").capitalize(), 80)


@dataclass(frozen=True)
class AlertFacts:
    """The alert as a notification may tell it."""

    alert_id: str
    patient_id: str
    rule: str
    severity: str
    state: str
    opened_at: datetime
    tier: int

    def link(self, base: str) -> str:
        return f"{base.rstrip('/')}/alerts/{self.alert_id}"


def email_address(recipient: str) -> Address:
    """The outbox's recipient as an address, or BadRecipientError saying why not."""
    text = recipient.strip()
    if not text or len(text) > 320 or _CONTROL.search(text) or any(c in text for c in '<>,;"() '):
        raise BadRecipientError(f"not an e-mail address: {plain(recipient, 80)!r}")
    local, at, domain = text.rpartition("@")
    # A domain has a dot, except `localhost` (the local stack's demo clinician and relay).
    dotted = "." in domain.strip(".") or domain.lower() == "localhost"
    if not at or not local or not domain or not dotted or ".." in domain:
        raise BadRecipientError(f"not an e-mail address: {plain(recipient, 80)!r}")
    try:
        return Address(addr_spec=unicodedata.normalize("NFC", text))
    except (ValueError, IndexError) as exc:  # the email package's parser errors
        raise BadRecipientError(f"not an e-mail address: {plain(recipient, 80)!r}") from exc


def alert_email(facts: AlertFacts, *, to: Address, sender: str, link_base: str, now: datetime) -> EmailMessage:
    """The alert e-mail: plain text with a minimal HTML alternative, no health values."""
    severity = plain(facts.severity, 20)
    rule = rule_in_words(facts.rule)
    patient = plain(facts.patient_id, 64)
    opened = facts.opened_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    link = facts.link(link_base)
    escalation = f" (escalation tier {facts.tier})" if facts.tier else ""
    msg = EmailMessage()
    msg["Subject"] = f"[RPM] {severity.upper()} alert: {rule} - patient {patient}{escalation}"
    msg["From"] = sender
    msg["To"] = to
    msg["Date"] = format_datetime(now.astimezone(UTC))
    msg["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2] or "localhost")
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies
    msg["X-RPM-Alert-Id"] = facts.alert_id
    text = (
        f"A {severity} alert needs attention{escalation}.\n\n"
        f"Rule:     {rule}\n"
        f"Severity: {severity}\n"
        f"Patient:  {patient}\n"
        f"Opened:   {opened}\n\n"
        f"Open it in the inbox: {link}\n\n"
        "Acknowledging the alert in the inbox stops further notifications about it.\n"
        "This message carries no readings on purpose (e-mail is not a secure channel): sign in to see them.\n"
    )
    msg.set_content(text)
    e = html.escape
    msg.add_alternative(
        "<!doctype html><html><body>"
        f"<p>A <strong>{e(severity)}</strong> alert needs attention{e(escalation)}.</p>"
        "<table>"
        f"<tr><th align=left>Rule</th><td>{e(rule)}</td></tr>"
        f"<tr><th align=left>Severity</th><td>{e(severity)}</td></tr>"
        f"<tr><th align=left>Patient</th><td>{e(patient)}</td></tr>"
        f"<tr><th align=left>Opened</th><td>{e(opened)}</td></tr>"
        "</table>"
        f'<p><a href="{e(link)}">Open the alert in the inbox</a></p>'
        "<p>Acknowledging the alert in the inbox stops further notifications about it. "
        "This message carries no readings on purpose (e-mail is not a secure channel): sign in to see them.</p>"
        "</body></html>",
        subtype="html",
    )
    return msg


def webhook_body(facts: AlertFacts, *, delivery_id: str, link_base: str) -> bytes:
    """The webhook's JSON body (compact, UTF-8): the same facts as the e-mail, no health values."""
    body = {
        "event": WEBHOOK_EVENT,
        "delivery_id": delivery_id,
        "alert_id": facts.alert_id,
        "patient_id": facts.patient_id,
        "rule": facts.rule,
        "rule_text": rule_in_words(facts.rule),
        "severity": facts.severity,
        "state": facts.state,
        "opened_at": facts.opened_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "tier": facts.tier,
        "link": facts.link(link_base),
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`: the X-RPM-Signature value."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, now: int, tolerance_s: int = 300) -> bool:
    """What a receiver does: recompute the MAC over the timestamp and the raw body, compare in
    constant time, and refuse a timestamp further than `tolerance_s` from its own clock."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).split(",v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))
