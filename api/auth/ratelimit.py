"""Login rate limiting: a sliding window of failed logins per username and per client address.

Pure and in-process (the clock is injected, so it is tested without sleeping). With
several API replicas each keeps its own counts, so the effective limit is multiplied by the
replica count; a shared store (PostgreSQL or Redis) is the next step if that matters.
The event loop is single-threaded and no method awaits, so no lock is needed.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

# Bounds memory when an attacker sprays random usernames or addresses: the oldest keys go.
MAX_TRACKED_KEYS = 100_000


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a login is refused before the password is even checked."""

    scope: str  # "username" or "ip"
    retry_after: int  # whole seconds until one failure leaves the window


class _Window:
    """Failure timestamps per key within a sliding window."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _prune(self, key: str, now: float) -> deque[float] | None:
        stamps = self._failures.get(key)
        if stamps is None:
            return None
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        if not stamps:
            del self._failures[key]
            return None
        return stamps

    def retry_after(self, key: str, now: float) -> int | None:
        stamps = self._prune(key, now)
        if stamps is None or len(stamps) < self.limit:
            return None
        # Allowed again when enough failures have aged out to drop below the limit.
        release = stamps[len(stamps) - self.limit] + self.window
        return max(1, math.ceil(release - now))

    def add(self, key: str, now: float) -> None:
        stamps = self._prune(key, now)
        if stamps is None:
            stamps = self._failures[key] = deque()
        stamps.append(now)
        self._failures.move_to_end(key)
        while len(self._failures) > MAX_TRACKED_KEYS:
            self._failures.popitem(last=False)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)


class LoginRateLimiter:
    """Refuse logins for a username or a client address after too many recent failures."""

    def __init__(
        self,
        *,
        max_per_username: int,
        max_per_ip: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._by_user = _Window(max_per_username, window_seconds)
        self._by_ip = _Window(max_per_ip, window_seconds)
        self._clock = clock

    @staticmethod
    def _user_key(username: str) -> str:
        # Case variants of one name count together, so they cannot multiply the budget.
        return username.strip().casefold()

    def check(self, username: str, ip: str) -> Refusal | None:
        """A refusal when either budget is spent, else None."""
        now = self._clock()
        refusals = [
            Refusal(scope, wait)
            for scope, wait in (
                ("username", self._by_user.retry_after(self._user_key(username), now)),
                ("ip", self._by_ip.retry_after(ip, now)),
            )
            if wait is not None
        ]
        return max(refusals, key=lambda r: r.retry_after) if refusals else None

    def record_failure(self, username: str, ip: str) -> None:
        now = self._clock()
        self._by_user.add(self._user_key(username), now)
        self._by_ip.add(ip, now)

    def record_success(self, username: str) -> None:
        """A correct password clears that username's failures (not the address's)."""
        self._by_user.clear(self._user_key(username))
