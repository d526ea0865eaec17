"""Login throttling that an attacker cannot turn against the user they target.

Failed logins are counted in a sliding window under three keys, each with its own budget;
once a budget is spent the next attempt under that key has to wait, and the wait doubles
with every further failure (1 s, 2 s, 4 s, ... up to a cap): a progressive delay rather than
a lock-out (OWASP Authentication Cheat Sheet, "login throttling").

- username and client address together: guessing one user's password from one client is
  slowed at once (small budget). This is the only key a single attacking client can spend.
- client address alone: one client spraying many usernames (larger budget, since many
  users can share an address behind NAT).
- username alone: many clients guessing one user's password (a distributed attack). Its
  delay does not apply to clients where that user has logged in successfully before, so
  the user can still log in from their own client while the attack goes on.

An allowed attempt counts as a failure from the moment it is allowed, before the password is
checked: otherwise a burst of concurrent guesses would all pass the check while argon2 runs.
A correct password then takes its own count back, clears that (username, client) budget and
marks the client as known for the user; it does not clear the other failures under the
address or the username, which an attacker would otherwise reset by logging in to an account
of their own.

Memory is bounded: keys are keyed BLAKE2b digests (16 bytes, whatever the username or address
length), each key keeps at most a fixed number of timestamps, and each table keeps at most
`max_keys` keys, the least recently touched going first.

Pure and in-process (the clock is injected, so it is tested without sleeping). With several
API replicas each keeps its own counts, so budgets multiply by the replica count. The event
loop is single-threaded and no method awaits, so no lock is needed.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

Scope = Literal["user_and_client", "client", "user"]

# Keys kept per table; an attacker spraying usernames or addresses evicts the oldest first.
MAX_TRACKED_KEYS: Final = 50_000
# How long a client stays known for a user after a successful login there.
KNOWN_CLIENT_SECONDS: Final = 30 * 24 * 3600.0
FIRST_DELAY_SECONDS: Final = 1.0


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a login is refused before the password is even checked."""

    scope: Scope
    retry_after: int  # whole seconds until an attempt under this key is allowed again


@dataclass(frozen=True, slots=True)
class Attempt:
    """A login attempt that was allowed (and counted as a failure until it succeeds)."""

    pair: bytes
    client: bytes
    user: bytes
    at: float


class _Throttle:
    """Failure timestamps per key within a sliding window, and the delay they impose."""

    def __init__(self, budget: int, window: float, max_delay: float, max_keys: int) -> None:
        self.budget = budget
        self.window = window
        self.max_delay = max_delay
        self.max_keys = max_keys
        # Past budget + this many failures the delay is at its cap: older stamps add nothing.
        self._keep = budget + max(1, math.ceil(math.log2(max(max_delay, 1.0) / FIRST_DELAY_SECONDS)) + 1)
        self._failures: OrderedDict[bytes, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def _prune(self, key: bytes, now: float) -> deque[float] | None:
        stamps = self._failures.get(key)
        if stamps is None:
            return None
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        if not stamps:
            del self._failures[key]
            return None
        return stamps

    def wait(self, key: bytes, now: float) -> float:
        """Seconds until an attempt under this key is allowed (0: allowed now)."""
        stamps = self._prune(key, now)
        if stamps is None or len(stamps) < self.budget:
            return 0.0
        excess = len(stamps) - self.budget
        delay = min(self.max_delay, FIRST_DELAY_SECONDS * 2.0**excess)
        return max(0.0, stamps[-1] + delay - now)

    def add(self, key: bytes, now: float) -> None:
        stamps = self._prune(key, now)
        if stamps is None:
            stamps = self._failures[key] = deque(maxlen=self._keep)
        stamps.append(now)
        self._failures.move_to_end(key)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def clear(self, key: bytes) -> None:
        self._failures.pop(key, None)

    def discard(self, key: bytes, stamp: float) -> None:
        """Take back one failure counted at `stamp` (if it is still held)."""
        stamps = self._failures.get(key)
        if stamps is not None and stamp in stamps:
            stamps.remove(stamp)
            if not stamps:
                del self._failures[key]


class LoginRateLimiter:
    """Decide whether a login attempt may go ahead; learn from its outcome."""

    def __init__(
        self,
        *,
        max_per_user_and_client: int,
        max_per_client: int,
        max_per_user: int,
        window_seconds: float,
        max_delay_seconds: float,
        max_keys: int = MAX_TRACKED_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        def throttle(budget: int) -> _Throttle:
            return _Throttle(budget, window_seconds, max_delay_seconds, max_keys)

        self._by_pair = throttle(max_per_user_and_client)
        self._by_client = throttle(max_per_client)
        self._by_user = throttle(max_per_user)
        self._known: OrderedDict[bytes, float] = OrderedDict()  # (user, client) -> last success
        self._max_keys = max_keys
        self._clock = clock
        # A per-process key: the digests in memory do not reveal usernames or addresses.
        self._salt = secrets.token_bytes(16)

    def _digest(self, *parts: str) -> bytes:
        return hashlib.blake2b(
            "\x00".join(parts).encode("utf-8", "surrogatepass"), key=self._salt, digest_size=16
        ).digest()

    def _keys(self, username: str, client: str) -> tuple[bytes, bytes, bytes]:
        # Case variants of one name count together, so they cannot multiply the budget.
        user = username.strip().casefold()
        return self._digest("pair", user, client), self._digest("client", client), self._digest("user", user)

    def tracked_keys(self) -> int:
        """How many keys are held in all tables (for tests and metrics)."""
        return len(self._by_pair) + len(self._by_client) + len(self._by_user) + len(self._known)

    def _is_known(self, pair: bytes, now: float) -> bool:
        seen = self._known.get(pair)
        if seen is None:
            return False
        if now - seen > KNOWN_CLIENT_SECONDS:
            del self._known[pair]
            return False
        return True

    def attempt(self, username: str, client: str) -> Refusal | Attempt:
        """May this login attempt go ahead? If so it counts as a failure until `succeeded`."""
        now = self._clock()
        pair, by_client, user = self._keys(username, client)
        waits: list[tuple[Scope, float]] = [
            ("user_and_client", self._by_pair.wait(pair, now)),
            ("client", self._by_client.wait(by_client, now)),
        ]
        if not self._is_known(pair, now):
            waits.append(("user", self._by_user.wait(user, now)))
        scope, wait = max(waits, key=lambda item: item[1])
        if wait > 0:
            return Refusal(scope, max(1, math.ceil(wait)))
        self._by_pair.add(pair, now)
        self._by_client.add(by_client, now)
        self._by_user.add(user, now)
        return Attempt(pair, by_client, user, now)

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the attempt is not a failure, and the client is known for the user."""
        self._by_pair.clear(attempt.pair)
        self._by_client.discard(attempt.client, attempt.at)
        self._by_user.discard(attempt.user, attempt.at)
        self._known[attempt.pair] = self._clock()
        self._known.move_to_end(attempt.pair)
        while len(self._known) > self._max_keys:
            self._known.popitem(last=False)
