"""The tier schedule of a patient in several care teams (alerts/service.py): the union of the
teams' tiers, defaults for a team without rows."""

from __future__ import annotations

from alerts.repository import TeamTiers
from alerts.service import merged_tiers
from core.alert_lifecycle import DEFAULT_TIERS, Tier


def test_no_team_or_a_team_without_rows_gets_the_defaults() -> None:
    assert merged_tiers([]) == DEFAULT_TIERS
    assert merged_tiers([TeamTiers("t1", ())]) == tuple(Tier(t.tier, t.after_s, t.min_severity) for t in DEFAULT_TIERS)


def test_the_earliest_time_and_lowest_severity_per_tier_number() -> None:
    a = TeamTiers("a", (Tier(0, 0, "high"), Tier(1, 600, "high")))
    b = TeamTiers("b", (Tier(0, 0, "low"), Tier(1, 120, "critical"), Tier(3, 3600, "medium")))
    assert merged_tiers([a, b]) == (Tier(0, 0, "low"), Tier(1, 120, "high"), Tier(3, 3600, "medium"))
