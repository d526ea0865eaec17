"""Patient-facing words for My health, My care plan and the learning pages (issue 12)."""

from __future__ import annotations

MESSAGES: dict[str, str] = {
    "health.title": "My health",
}
