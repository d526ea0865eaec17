"""Pure parts of the API without a stack: password hashing, tokens, the login rate limiter
and the settings' refusals."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from api.auth.ratelimit import Attempt, LoginRateLimiter, Refusal
from api.clients import client_address
from api.security import TokenError, decode_token, hash_password, issue_token, verify_password
from api.settings import ApiSettings

KEY = "k" * 32


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_hash_password_makes_salted_argon2id_hashes_that_verify() -> None:
    first, second = hash_password("s3cret pass"), hash_password("s3cret pass")
    assert first.startswith("$argon2id$")
    assert first != second  # salted
    assert verify_password("s3cret pass", first)
    assert not verify_password("s3cret pasS", first)
    assert not verify_password("s3cret pass", "not-a-hash")


def test_tokens_round_trip_and_never_outlive_the_session() -> None:
    user_id, now = uuid.uuid4(), datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    token, issued = issue_token(
        key=KEY,
        issuer="rpm-api",
        user_id=user_id,
        role="patient",
        session_id="s1",
        auth_time=now - timedelta(hours=11, minutes=50),
        now=now,
        ttl=timedelta(minutes=15),
        absolute_limit=timedelta(hours=12),
    )
    assert issued.expires_at == now + timedelta(minutes=10)  # cut at the absolute limit
    claims = decode_token(token, key=KEY, issuer="rpm-api", verify_exp=False)
    assert (claims.user_id, claims.role, claims.session_id) == (user_id, "patient", "s1")
    with pytest.raises(TokenError) as expired:
        decode_token(token, key=KEY, issuer="rpm-api")  # `now` above is in the past
    assert expired.value.code == "token_expired"
    with pytest.raises(TokenError) as other_issuer:
        decode_token(token, key=KEY, issuer="someone-else", verify_exp=False)
    assert other_issuer.value.code == "invalid_token"


def limiter(clock: FakeClock, *, pair: int = 3, client: int = 5, user: int = 10, **kw: int) -> LoginRateLimiter:
    return LoginRateLimiter(
        max_per_user_and_client=pair,
        max_per_client=client,
        max_per_user=user,
        window_seconds=300,
        max_delay_seconds=300,
        clock=clock,
        **kw,
    )


def fail(throttle: LoginRateLimiter, username: str, client: str) -> None:
    """An allowed attempt whose password turns out wrong (it counts from the moment it is allowed)."""
    assert isinstance(throttle.attempt(username, client), Attempt)


def succeed(throttle: LoginRateLimiter, username: str, client: str) -> None:
    attempt = throttle.attempt(username, client)
    assert isinstance(attempt, Attempt)
    throttle.succeeded(attempt)


def test_failures_from_one_client_make_that_client_wait_ever_longer() -> None:
    clock = FakeClock()
    throttle = limiter(clock, pair=3)
    for _ in range(3):
        fail(throttle, "alice", "10.0.0.1")
    assert throttle.attempt("Alice", "10.0.0.1") == Refusal("user_and_client", 1)  # case variants share it
    waits = []
    for _ in range(5):
        refusal = throttle.attempt("alice", "10.0.0.1")
        assert isinstance(refusal, Refusal)
        waits.append(refusal.retry_after)
        clock.now += refusal.retry_after
        fail(throttle, "alice", "10.0.0.1")
    assert waits == [1, 2, 4, 8, 16]  # progressive: doubling after each further failure
    # The same user from another client is not slowed down by any of this.
    assert isinstance(throttle.attempt("alice", "10.0.0.2"), Attempt)


def test_concurrent_attempts_are_counted_before_their_passwords_are_checked() -> None:
    throttle = limiter(FakeClock(), pair=3)
    # A burst: nothing has failed yet when the fourth arrives, but three are in flight.
    outcomes = [throttle.attempt("alice", "10.0.0.1") for _ in range(10)]
    assert [isinstance(o, Attempt) for o in outcomes] == [True] * 3 + [False] * 7


def test_the_delay_is_capped_and_failures_leave_the_window() -> None:
    clock = FakeClock()
    throttle = LoginRateLimiter(
        max_per_user_and_client=1,
        max_per_client=100,
        max_per_user=100,
        window_seconds=600,
        max_delay_seconds=30,
        clock=clock,
    )
    for _ in range(12):
        fail(throttle, "bob", "10.0.0.1")
        clock.now += 0.001
        refusal = throttle.attempt("bob", "10.0.0.1")
        assert isinstance(refusal, Refusal)
        clock.now += refusal.retry_after
    fail(throttle, "bob", "10.0.0.1")
    assert throttle.attempt("bob", "10.0.0.1") == Refusal("user_and_client", 30)
    clock.now += 600
    assert isinstance(throttle.attempt("bob", "10.0.0.1"), Attempt)


def test_one_client_spraying_usernames_waits_but_others_behind_other_addresses_do_not() -> None:
    throttle = limiter(FakeClock(), client=4)
    for name in ("a", "b", "c", "d"):
        fail(throttle, name, "10.0.0.1")
    refusal = throttle.attempt("e", "10.0.0.1")
    assert isinstance(refusal, Refusal)
    assert refusal.scope == "client"
    assert isinstance(throttle.attempt("e", "10.0.0.2"), Attempt)


def test_a_distributed_attack_delays_new_clients_but_not_the_users_own() -> None:
    throttle = limiter(FakeClock(), pair=3, user=4)
    succeed(throttle, "carol", "192.0.2.1")  # carol's own laptop
    for bot in range(4):
        fail(throttle, "carol", f"198.51.100.{bot}")
    refusal = throttle.attempt("carol", "203.0.113.5")  # a client carol never used
    assert isinstance(refusal, Refusal)
    assert refusal.scope == "user"
    assert isinstance(throttle.attempt("carol", "192.0.2.1"), Attempt)


def test_success_takes_back_its_own_count_and_clears_only_that_clients_budget() -> None:
    clock = FakeClock()
    throttle = limiter(clock, pair=2, client=3)
    fail(throttle, "alice", "10.0.0.1")
    fail(throttle, "alice", "10.0.0.1")
    refusal = throttle.attempt("alice", "10.0.0.1")
    assert isinstance(refusal, Refusal)
    clock.now += refusal.retry_after
    succeed(throttle, "alice", "10.0.0.1")
    succeed(throttle, "alice", "10.0.0.1")  # successes never add up
    # Two failures of alice stay counted against the address: one more of anyone's reaches 3.
    fail(throttle, "bob", "10.0.0.1")
    refusal = throttle.attempt("carol", "10.0.0.1")
    assert isinstance(refusal, Refusal)
    assert refusal.scope == "client"


def test_memory_is_bounded_whatever_the_usernames_sprayed() -> None:
    throttle = limiter(FakeClock(), client=10**9, max_keys=100)
    huge = "x" * 1_000_000
    for n in range(1000):
        fail(throttle, f"{huge}{n}", f"10.0.{n // 256}.{n % 256}")
        succeed(throttle, f"user{n}", "10.0.0.1")
    # Three failure tables and the known clients, each at most max_keys entries.
    assert throttle.tracked_keys() <= 4 * 100
    # Keys are fixed-size digests, not the megabyte usernames.
    assert {len(key) for key in throttle._by_user._failures} == {16}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"jwt_secret": "short"}, "at least 32 bytes"),
        ({"session_idle_timeout": 60}, "session_idle_timeout"),
        ({"session_absolute_timeout": 1200, "session_idle_timeout": 1800}, "session_absolute_timeout"),
        ({"login_max_delay": 0}, "login_max_delay"),
        ({"api_trusted_proxies": "10.0.0.0/8,not-an-address"}, "RPM_API_TRUSTED_PROXIES"),
        ({"environment": "production", "database_url": "postgresql://u:change-me@h/db"}, "placeholder"),
    ],
)
def test_settings_refuse_unsafe_values(overrides: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"jwt_secret": KEY, "database_url": "postgresql://u:good-password@h/db"}
    values.update(overrides)
    with pytest.raises(ValidationError, match=message):
        ApiSettings(_env_file=None, **values)  # type: ignore[arg-type]


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RPM_JWT_SECRET", KEY)
    monkeypatch.setenv("RPM_API_PORT", "18123")
    monkeypatch.setenv("RPM_ACCESS_TOKEN_TTL", "600")
    settings = ApiSettings(_env_file=None)
    assert settings.api_port == 18123
    assert settings.access_token_ttl == timedelta(minutes=10)
    assert settings.api_host == "127.0.0.1"
    assert all(field.description for field in ApiSettings.model_fields.values())


@pytest.mark.parametrize(
    ("peer", "forwarded", "proxies", "client"),
    [
        ("198.51.100.1", ["203.0.113.5"], "", "198.51.100.1"),  # nobody trusted: the peer
        ("10.0.0.2", ["203.0.113.5"], "10.0.0.0/8", "203.0.113.5"),
        ("10.0.0.2", ["203.0.113.5, 10.0.0.7", "10.0.0.9"], "10.0.0.0/8", "203.0.113.5"),  # several headers
        ("10.0.0.2", ["1.2.3.4, 203.0.113.5"], "10.0.0.0/8", "203.0.113.5"),  # the left part is the client's word
        ("10.0.0.2", ["2001:db8::1"], "10.0.0.0/8", "2001:db8::1"),
        ("::1", ["203.0.113.5"], "::1", "203.0.113.5"),
        ("10.0.0.2", ["garbage, 203.0.113.5"], "10.0.0.0/8", "203.0.113.5"),
        ("10.0.0.2", ["203.0.113.5, garbage"], "10.0.0.0/8", "10.0.0.2"),  # the proxy's own hop is garbage
        ("10.0.0.2", [], "10.0.0.0/8", "10.0.0.2"),
        (None, ["203.0.113.5"], "10.0.0.0/8", "unknown"),
    ],
)
def test_client_address_believes_forwarded_for_only_from_trusted_proxies(
    peer: str | None, forwarded: list[str], proxies: str, client: str
) -> None:
    settings = ApiSettings(_env_file=None, jwt_secret=KEY, api_trusted_proxies=proxies)  # type: ignore[call-arg]
    assert client_address(peer, forwarded, settings.trusted_proxy_networks) == client
