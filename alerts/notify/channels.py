"""The two ways a notification leaves the platform: e-mail through an SMTP relay and a
signed webhook POST. Each delivery either returns (delivered) or raises `TemporaryError` (worth
another attempt later: the relay or the receiver is away, answered 4xx-transient or 5xx,
timed out) or `PermanentError` (another attempt would fail the same way: a refused address, a
destination the rules forbid, a 4xx answer).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage

import httpx

from alerts.notify.destinations import DestinationRefusedError, resolve
from alerts.notify.messages import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, WEBHOOK_EVENT, plain, sign
from alerts.notify.settings import NotifySettings


class TemporaryError(Exception):
    """Delivery failed for now; the outbox tries again after a backoff."""


class PermanentError(Exception):
    """Delivery cannot succeed as configured; the outbox marks the notification failed."""


# --- e-mail ----------------------------------------------------------------------------------


def _tls_context(settings: NotifySettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.smtp_ca_file)


def _smtp_send(settings: NotifySettings, message: EmailMessage, recipient: str) -> None:
    timeout = settings.smtp_timeout_s
    client: smtplib.SMTP
    if settings.smtp_security == "tls":
        client = smtplib.SMTP_SSL(
            settings.smtp_host, settings.smtp_port, timeout=timeout, context=_tls_context(settings)
        )
    else:
        client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
    with client:
        if settings.smtp_security == "starttls":
            client.starttls(context=_tls_context(settings))
        if settings.smtp_username:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            client.login(settings.smtp_username, password)
        client.send_message(message, to_addrs=[recipient])


def _smtp_reply(code: int, text: bytes | str) -> str:
    shown = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"SMTP {code} {plain(shown, 200)}"


async def send_email(settings: NotifySettings, message: EmailMessage, recipient: str) -> None:
    """Hand one message to the relay (smtplib in a worker thread: one short connection per
    message keeps a relay restart from breaking a pooled session)."""
    try:
        await asyncio.to_thread(_smtp_send, settings, message, recipient)
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = next(iter(exc.recipients.values()))
        raise (PermanentError if code >= 500 else TemporaryError)(_smtp_reply(code, text)) from exc
    except smtplib.SMTPAuthenticationError as exc:
        # The relay refused our credentials: a settings matter an operator fixes, so later
        # attempts may succeed (bounded by notify_max_attempts all the same).
        raise TemporaryError(f"relay refused the login: {_smtp_reply(exc.smtp_code, exc.smtp_error)}") from exc
    except smtplib.SMTPResponseException as exc:
        reply = _smtp_reply(exc.smtp_code, exc.smtp_error)
        raise (PermanentError if exc.smtp_code >= 500 else TemporaryError)(reply) from exc
    except (smtplib.SMTPException, OSError) as exc:  # connection refused, reset, timeout, TLS
        raise TemporaryError(
            f"relay {settings.smtp_host}:{settings.smtp_port} unreachable: {plain(str(exc) or type(exc).__name__)}"
        ) from exc


# --- webhooks --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Webhook:
    url: str
    secret: str


def webhook_client(settings: NotifySettings) -> httpx.AsyncClient:
    """The client every webhook delivery uses: no redirects followed, no proxy from the
    environment (a proxy would connect on our behalf to wherever it is told), short timeouts."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(settings.webhook_timeout_s),
        headers={"User-Agent": "rpm-notify/1"},
    )


async def send_webhook(
    client: httpx.AsyncClient,
    settings: NotifySettings,
    webhook: Webhook,
    body: bytes,
    *,
    delivery_id: str,
    now_unix: int | None = None,
) -> int:
    """POST the signed body to the webhook; returns the status code of a 2xx answer."""
    try:
        destination = await resolve(
            webhook.url,
            patterns=settings.webhook_host_patterns,
            require_https=settings.webhook_require_https,
            allow_loopback=settings.webhook_allow_loopback,
            timeout_s=settings.webhook_timeout_s,
        )
    except DestinationRefusedError as exc:
        raise PermanentError(f"destination refused: {exc}") from exc
    timestamp = int(time.time()) if now_unix is None else now_unix
    host_header = destination.url.netloc.decode("ascii")
    request = client.build_request(
        "POST",
        destination.connect_url,
        content=body,
        headers={
            "Host": host_header,
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(webhook.secret, timestamp, body),
            DELIVERY_HEADER: delivery_id,
            EVENT_HEADER: WEBHOOK_EVENT,
        },
        # TLS: the server name sent and the certificate checked are the configured host's.
        extensions={"sni_hostname": destination.url.host} if destination.url.scheme == "https" else {},
    )
    try:
        response = await client.send(request, stream=True)
    except httpx.TimeoutException as exc:
        raise TemporaryError(
            f"webhook timed out after {settings.webhook_timeout_s:g} s ({type(exc).__name__})"
        ) from exc
    except httpx.TransportError as exc:
        raise TemporaryError(f"webhook unreachable: {plain(str(exc) or type(exc).__name__)}") from exc
    # The answer's body is never read: nothing of it is used, and a receiver cannot make us
    # hold a large one.
    await response.aclose()
    status = response.status_code
    if 200 <= status < 300:
        return status
    if status in (408, 425, 429) or status >= 500:
        raise TemporaryError(f"webhook answered HTTP {status}")
    if 300 <= status < 400:
        raise PermanentError(f"webhook answered HTTP {status} (a redirect, not followed)")
    raise PermanentError(f"webhook answered HTTP {status}")
