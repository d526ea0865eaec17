"""Settings of the notification sender (e-mail through SMTP, signed webhooks).

`NotifySettings` is a settings group: the alerts process's own settings class inherits it
(prefix `RPM_`, like every process). The local stack (infra/stack/) points it at its own
SMTP server and lets webhooks reach loopback; production points it at any relay and keeps
webhooks to public addresses of the allow-listed hosts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from core.settings import PLACEHOLDER_SECRETS, BaseRpmSettings

SmtpSecurity = Literal["none", "starttls", "tls"]


class NotifySettings(BaseRpmSettings):
    smtp_host: str = Field("127.0.0.1", description="SMTP relay host for alert e-mail (the local stack runs its own)")
    smtp_port: int = Field(18025, description="SMTP relay port (the local stack's SMTP server listens here)")
    smtp_security: SmtpSecurity = Field(
        "none",
        description="none (plain, loopback relay only), starttls (upgrade on the submission port, usually 587) "
        "or tls (implicit TLS, usually 465); certificates are verified against the system CAs or smtp_ca_file",
    )
    smtp_ca_file: str | None = Field(None, description="CA bundle to verify the relay's certificate (default: system)")
    smtp_username: str | None = Field(None, description="SMTP AUTH user name; empty = no authentication")
    smtp_password: SecretStr | None = Field(None, description="SMTP AUTH password")
    smtp_timeout_s: float = Field(10.0, gt=0, description="Timeout of each SMTP connection and command")
    notify_from: str = Field(
        "RPM alerts <rpm-alerts@localhost>", description="From address of alert e-mail (the relay must accept it)"
    )
    notify_link_base: str = Field(
        "http://127.0.0.1:18000",
        description="Base URL of the clinician web pages; e-mail and webhooks link to <base>/alerts/<id>",
    )
    notify_poll_s: float = Field(1.0, gt=0, description="How often the sender looks for notifications that are due")
    notify_batch: int = Field(20, ge=1, le=500, description="Notifications claimed per round (per sender)")
    notify_concurrency: int = Field(4, ge=1, le=64, description="Deliveries in flight at once per sender")
    notify_max_attempts: int = Field(
        6, ge=1, le=50, description="Attempts per notification before it is marked failed (temporary errors only)"
    )
    notify_retry_initial_s: float = Field(
        10.0, gt=0, description="Wait before the second attempt; doubles with each attempt after"
    )
    notify_retry_max_s: float = Field(600.0, gt=0, description="Longest wait between two attempts")
    notify_lease_s: float = Field(
        120.0,
        gt=0,
        description="A notification left 'sending' this long (its sender died mid-send) is taken up again; "
        "longer than the slowest delivery",
    )
    webhook_allowed_hosts: str = Field(
        "",
        description="Host names webhooks may be sent to, comma separated; '*.example.org' allows its subdomains; "
        "empty = no webhook is delivered. The address rules apply whatever is listed",
    )
    webhook_require_https: bool = Field(True, description="Refuse webhook URLs that are not https")
    webhook_allow_loopback: bool = Field(
        False,
        description="Let webhooks reach loopback addresses (the local stack and tests only; refused in production). "
        "Private, link-local, multicast and reserved addresses are always refused",
    )
    webhook_timeout_s: float = Field(5.0, gt=0, le=60, description="Timeout of each webhook delivery (connect+answer)")

    @property
    def webhook_host_patterns(self) -> tuple[str, ...]:
        return tuple(h.strip().lower().rstrip(".") for h in self.webhook_allowed_hosts.split(",") if h.strip())

    @model_validator(mode="after")
    def _production_rules(self) -> NotifySettings:
        if self.environment == "production" and self.webhook_allow_loopback:
            raise ValueError("webhook_allow_loopback is for the local stack and tests; it is refused in production")
        if self.environment != "development" and self.smtp_username:
            password = self.smtp_password.get_secret_value() if self.smtp_password is not None else ""
            if password in PLACEHOLDER_SECRETS:
                raise ValueError(
                    f"smtp_password is empty or a placeholder; it is allowed in development only "
                    f"(environment {self.environment})"
                )
        if self.notify_retry_max_s < self.notify_retry_initial_s:
            raise ValueError("notify_retry_max_s must be at least notify_retry_initial_s")
        return self
