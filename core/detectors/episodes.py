"""Episode bookkeeping of the rules with hysteresis: raise once, hold, clear.

A rule that raises an episode does not raise it again while it is open, and ends it with a
clear detection that names the raise (`model.clear_detection`), usually only once the readings
have stayed back in range for the rule's hold time. `EpisodeTracker` is that bookkeeping, once
for every rule of `core.detectors.rules`: the working copy of one rule's open episodes (or of
several rules that end together, such as the two levels of a hypoglycaemia) while one batch of
a patient's readings runs through it, plus the run of readings that counts towards the clear.

The tracker appends the detections it makes to the list it is given, so that rules with several
trackers keep one list in the order the detections happened. What the rule saves between
batches are the tracker's plain fields (`episodes`, `hold_since`, `hold_last`), in the rule's
own state struct.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from core.detectors.model import Detection, Episode, clear_detection, episode_of, raise_detection
from core.rules import Rule, Severity


class EpisodeTracker:
    """The open episodes of one rule (keyed by rule name, in the order they were raised) and the
    hold that ends them.

    - `raise_episode` raises a rule and keeps its episode open;
    - `held(at, hold)` notes a reading that counts towards the end of the open episodes and
      answers the start of that run once it has lasted `hold` (with `max_gap`, a run with a gap
      longer than that between two of its readings starts again);
    - `break_hold` notes a reading that does not count (the run starts again at the next one);
    - `clear` ends the open episodes (or one of them) with a clear detection each.
    """

    __slots__ = ("_found", "_patient_id", "episodes", "hold_last", "hold_since")

    def __init__(
        self,
        patient_id: str,
        found: list[Detection],
        episodes: Iterable[Episode | None] = (),
        *,
        hold_since: datetime | None = None,
        hold_last: datetime | None = None,
    ) -> None:
        self._patient_id = patient_id
        self._found = found
        self.episodes: dict[str, Episode] = {e.rule.value: e for e in episodes if e is not None}
        self.hold_since = hold_since
        self.hold_last = hold_last

    @property
    def is_open(self) -> bool:
        return bool(self.episodes)

    @property
    def episode(self) -> Episode | None:
        """The open episode raised last (the only one, for a rule that keeps one at a time)."""
        return next(reversed(self.episodes.values()), None)

    def has(self, rule: Rule) -> bool:
        return rule.value in self.episodes

    def raise_episode(
        self,
        rule: Rule,
        severity: Severity,
        *,
        at: datetime,
        evidence: dict[str, Any],
        episode_start: datetime | None = None,
        key_suffix: str = "",
    ) -> Episode:
        """Raise `rule` (its episode starting at `episode_start`, default `at`) and keep it open."""
        det = raise_detection(
            self._patient_id,
            rule,
            severity,
            at=at,
            episode_start=at if episode_start is None else episode_start,
            evidence=evidence,
            key_suffix=key_suffix,
        )
        self._found.append(det)
        episode = self.episodes[rule.value] = episode_of(det)
        return episode

    def held(self, at: datetime, hold: timedelta, *, max_gap: timedelta | None = None) -> datetime | None:
        """A reading at `at` that counts towards ending the open episodes: the start of the run
        once it has lasted at least `hold`, else None (also when no episode is open)."""
        if not self.episodes:
            return None
        gap = max_gap is not None and (self.hold_last is None or at - self.hold_last > max_gap)
        if self.hold_since is None or gap:
            self.hold_since = at
        self.hold_last = at
        return self.hold_since if at - self.hold_since >= hold else None

    def break_hold(self) -> None:
        """A reading that does not count towards the end: the run starts again."""
        self.hold_since = self.hold_last = None

    def clear(self, *, at: datetime, evidence: dict[str, Any], rule: Rule | None = None) -> None:
        """End every open episode (or only `rule`'s) with a clear detection, dated `at`."""
        ending = list(self.episodes.values()) if rule is None else [self.episodes.pop(rule.value)]
        self._found.extend(clear_detection(self._patient_id, e, at=at, evidence=evidence) for e in ending)
        if rule is None:
            self.episodes = {}
        if not self.episodes:
            self.break_hold()

    def drop(self) -> None:
        """Forget the open episodes without clearing them (they stay open for the alert service)."""
        self.episodes = {}
        self.break_hold()
