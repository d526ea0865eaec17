"""Pure parts of the API without a stack: password hashing, tokens, the login rate limiter
and the settings' refusals."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from api.auth.ratelimit import LoginRateLimiter
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


def test_rate_limiter_counts_failures_in_a_sliding_window() -> None:
    clock = FakeClock()
    limiter = LoginRateLimiter(max_per_username=3, max_per_ip=5, window_seconds=300, clock=clock)
    for _ in range(3):
        assert limiter.check("alice", "10.0.0.1") is None
        limiter.record_failure("alice", "10.0.0.1")
        clock.now += 10
    refusal = limiter.check("Alice", "10.0.0.2")  # another address, same user
    assert refusal is not None
    assert refusal.scope == "username"
    assert refusal.retry_after == 300 - 30  # until the first failure leaves the window
    clock.now += refusal.retry_after
    assert limiter.check("alice", "10.0.0.1") is None


def test_rate_limiter_locks_an_address_across_usernames_only_for_that_address() -> None:
    clock = FakeClock()
    limiter = LoginRateLimiter(max_per_username=3, max_per_ip=4, window_seconds=300, clock=clock)
    for name in ("a", "b", "c", "d"):
        limiter.record_failure(name, "10.0.0.1")
    refusal = limiter.check("e", "10.0.0.1")
    assert refusal is not None
    assert refusal.scope == "ip"
    assert limiter.check("e", "10.0.0.2") is None


def test_success_clears_the_username_budget_but_not_the_address_budget() -> None:
    limiter = LoginRateLimiter(max_per_username=2, max_per_ip=3, window_seconds=300, clock=FakeClock())
    limiter.record_failure("alice", "10.0.0.1")
    limiter.record_failure("alice", "10.0.0.1")
    limiter.record_success("alice")
    assert limiter.check("alice", "10.0.0.9") is None
    limiter.record_failure("bob", "10.0.0.1")
    assert limiter.check("carol", "10.0.0.1") is not None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"jwt_secret": "short"}, "at least 32 bytes"),
        ({"session_idle_timeout": 60}, "session_idle_timeout"),
        ({"session_absolute_timeout": 1200, "session_idle_timeout": 1800}, "session_absolute_timeout"),
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
