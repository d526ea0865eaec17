"""The audit event as the API writes it (table `audit_events`, append-only)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

AuditOutcome = Literal["allowed", "denied", "error"]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audited action. `detail` names what was asked for, never health values."""

    action: str
    resource: str
    outcome: AuditOutcome
    actor_id: uuid.UUID | None = None
    actor_role: str | None = None
    patient_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
