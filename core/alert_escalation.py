"""Who hears of an alert, and when (ADR 0018): the order of severities, the care team's
escalation tiers and a clinician's quiet hours.

Pure functions over plain data, with the time passed in, like the transitions of
`core.alert_lifecycle` (which uses them, and re-exports them for its importers): a tier
applies to an alert whose severity is at least its `min_severity`; a notification due inside
a clinician's quiet hours waits for their end, unless the alert is critical.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.rules import Severity

SEVERITY_ORDER: Final[tuple[Severity, ...]] = (
    Severity.INFO,
    Severity.LOW,
    Severity.MEDIUM,
    Severity.HIGH,
    Severity.CRITICAL,
)


def severity_rank(severity: str) -> int:
    return SEVERITY_ORDER.index(Severity(severity))


def max_severity(a: str, b: str) -> Severity:
    return Severity(a) if severity_rank(a) >= severity_rank(b) else Severity(b)


def require_aware(now: datetime) -> datetime:
    """`now` itself; a naive time is refused (ValueError)."""
    if now.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return now


@dataclass(frozen=True, slots=True)
class Tier:
    """One `escalation_tiers` row: notified when the alert is still not acknowledged `after_s`
    seconds after it opened, if its severity is at least `min_severity`."""

    tier: int
    after_s: int
    min_severity: str = "low"
    channels: tuple[str, ...] = ("email",)
    recipients: tuple[str, ...] = ()  # user ids; empty = every clinician of the team


# A care team without escalation_tiers rows (ADR 0018): e-mail to every clinician of the team
# when the alert opens, again after 15 min and 30 min while nobody acknowledged it.
DEFAULT_TIERS: Final[tuple[Tier, ...]] = (
    Tier(0, 0, "info", ("email", "webhook")),
    Tier(1, 15 * 60, "info", ("email", "webhook")),
    Tier(2, 30 * 60, "info", ("email", "webhook")),
)


def applies(tier: Tier, severity: str) -> bool:
    return severity_rank(severity) >= severity_rank(tier.min_severity)


def next_tier(tiers: Iterable[Tier], current: int, severity: str) -> Tier | None:
    """The first tier above `current` that applies to `severity`, or None."""
    above = sorted((t for t in tiers if t.tier > current and applies(t, severity)), key=lambda t: t.tier)
    return above[0] if above else None


def tiers_or_default(tiers: Sequence[Tier]) -> tuple[Tier, ...]:
    return tuple(sorted(tiers, key=lambda t: t.tier)) if tiers else DEFAULT_TIERS


def quiet_hours_delay(
    severity: str,
    now: datetime,
    quiet_start: time | None,
    quiet_end: time | None,
    time_zone: str = "UTC",
) -> datetime:
    """When a notification to a clinician is due: now, or the end of their quiet hours if now
    falls inside them. A critical alert is never delayed. Quiet hours may span midnight
    (22:00 to 07:00); start == end means no quiet hours. An unknown time zone counts as UTC."""
    require_aware(now)
    if Severity(severity) == Severity.CRITICAL or quiet_start is None or quiet_end is None:
        return now
    if quiet_start == quiet_end:
        return now
    try:
        zone: ZoneInfo | Any = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    local = now.astimezone(zone)
    t = local.timetz().replace(tzinfo=None)
    if quiet_start < quiet_end:
        inside = quiet_start <= t < quiet_end
        end_day = local.date()
    else:  # spans midnight
        inside = t >= quiet_start or t < quiet_end
        end_day = local.date() + timedelta(days=1) if t >= quiet_start else local.date()
    if not inside:
        return now
    end = datetime.combine(end_day, quiet_end, tzinfo=zone)
    return max(now, end.astimezone(UTC))
