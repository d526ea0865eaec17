"""An audit event in plain words for the patient it is about: who, did what, to which part of
the record. Pure functions over the event's columns; the texts are in api/portal/text_access.py.

The `resource` values are those the API writes (grep `resource=` and `RESOURCE` in api/):
`observations`, `observation_rollups`, `patient_summary`, `care_plan`, `alert`, `device`,
`break_glass`, `audit_events`, `access_log`, `privacy_flag`, the portal's own (`me/...`,
consent, reminders, profile), and for a refused request the route's path
(api/audit/rejections.py), e.g. `/api/v1/patients/{patient_id}/summary`. Anything else is
"your record": a new resource is never shown raw to a patient, nor missed.
"""

from __future__ import annotations

from typing import Any, Final

from api.portal.text import t
from core.catalogue import CATALOGUE

# resource (or a path's last word) -> the `access.what.*` id
_WHAT: Final[dict[str, str]] = {
    "observations": "readings",
    "observation": "readings",
    "observation_rollups": "trend",
    "rollups": "trend",
    "patient_summary": "summary",
    "summary": "summary",
    "care_plan": "care_plan",
    "care-plan": "care_plan",
    "what-if": "care_plan",
    "alert": "alert",
    "alerts": "alert",
    "device": "devices",
    "devices": "devices",
    "break_glass": "emergency",
    "break-glass": "emergency",
    "audit_events": "access_log",
    "access_log": "access_log",
    "access-log": "access_log",
    "privacy_flag": "flag",
    "privacy_flags": "flag",
    "flag": "flag",
    "consent": "consent",
    "consents": "consent",
    "reminder": "reminders",
    "reminders": "reminders",
    "profile": "profile",
    "health": "health",
}

# action -> the `access.did.*` id
_DID: Final[dict[str, str]] = {
    "read": "read",
    "update": "update",
    "create": "create",
    "what_if": "what_if",
    "write": "write",
    "acknowledge": "acknowledge",
    "resolve": "resolve",
    "review": "review",
}

_ROLES: Final = ("clinician", "admin", "ops", "patient")


def what_key(resource: str) -> str:
    """The `access.what.*` id of a resource: by its name, or by the last meaningful word of a
    route path (`/api/v1/patients/{patient_id}/care-plan/what-if` -> care plan)."""
    if resource in _WHAT:
        return _WHAT[resource]
    words = [w for w in resource.strip("/").split("/") if w and not w.startswith("{")]
    for word in reversed(words):
        if word in _WHAT:
            return _WHAT[word]
    return "record"


def what_words(resource: str, detail: dict[str, Any]) -> str:
    key = what_key(resource)
    metric = detail.get("metric")
    if key in ("readings", "trend") and isinstance(metric, str) and metric in CATALOGUE:
        return t(f"access.what.metric_{key}", metric=t(f"access.metric.{metric}"))
    return t(f"access.what.{key}")


def did_words(action: str, resource: str) -> str:
    if action == "create" and what_key(resource) == "emergency":
        return t("access.did.open")
    if action == "update" and what_key(resource) == "flag":
        return t("access.did.review")
    return t(f"access.did.{_DID.get(action, 'other')}")


def role_words(role: str | None) -> str:
    return t(f"access.role.{role if role in _ROLES else 'other'}")


def outcome_words(outcome: str) -> str:
    return t(f"access.outcome.{outcome if outcome in ('allowed', 'denied', 'error') else 'error'}")


def who_name(*, is_me: bool, role: str | None, display_name: str | None) -> str:
    """Staff by their name. Never another patient's name: a patient who tried to open this
    record learns nothing about the other, and this patient nothing about them."""
    if is_me:
        return t("access.who_you")
    if role == "patient":
        return t("access.who_other_patient")
    return display_name or t("access.who_unknown")


def sentence(who: str, role: str | None, *, is_me: bool, did: str, what: str, outcome: str = "allowed") -> str:
    """'Dr Ada Lee (doctor or nurse) looked at your summary.'; for a refused request '... tried to
    open your summary. We did not let them in.' (a refusal did not do what it asked)."""
    label = who if is_me or role == "patient" or role is None else f"{who} ({role_words(role)})"
    if outcome == "denied":
        return t("access.sentence_blocked", who=label, what=what)
    return t("access.sentence", who=label, did=did, what=what)
