"""Login throttling against the real database, and whose address counts: an attacker's
failures slow the attacker down, not the user they target; X-Forwarded-For is believed only
from configured proxies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.auth.ratelimit import LoginRateLimiter
from api.settings import ApiSettings
from tests.api.support import PASSWORD, assert_problem

pytestmark = pytest.mark.anyio

TOKEN_URL = "/api/v1/auth/token"
ATTACKER = ("203.0.113.66", 41000)
VICTIM = ("192.0.2.77", 52000)


@contextlib.asynccontextmanager
async def clients(app: FastAPI, *addresses: tuple[str, int]) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One app (one lifespan, one limiter) and an HTTP client per network address."""
    async with app.router.lifespan_context(app), contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=address), base_url="http://testserver")
            )
            for address in addresses
        ]


async def login(client: httpx.AsyncClient, username: str, password: str, **headers: str) -> httpx.Response:
    return await client.post(TOKEN_URL, data={"username": username, "password": password}, headers=headers)


async def test_an_attackers_100_wrong_passwords_do_not_stop_the_victims_login_from_another_client(
    settings: ApiSettings, make_user: Any, audit_rows: Any
) -> None:
    victim = make_user("clinician")
    async with clients(create_app(settings), ATTACKER, VICTIM) as (attacker, own):
        statuses = [(await login(attacker, victim.username, f"guess-{n}")).status_code for n in range(100)]
        response = await login(own, victim.username, PASSWORD)

    assert response.status_code == 200, response.text
    # The attacker had 5 guesses, then had to wait (a delay that doubles, not a lock-out).
    assert statuses[:5] == [401] * 5
    assert set(statuses) == {401, 429}
    rows = audit_rows(actor_id=victim.id, action="login")
    assert rows[-1]["outcome"] == "allowed"
    assert rows[-1]["detail"]["client_ip"] == VICTIM[0]


async def test_a_distributed_attack_delays_unknown_clients_but_not_the_users_own(
    settings_for: Callable[..., ApiSettings], make_user: Any
) -> None:
    victim = make_user("clinician")
    bots = [(f"198.51.100.{n}", 40000 + n) for n in range(4)]
    new_device = ("203.0.113.9", 43000)
    app = create_app(settings_for(login_max_failures_per_user=4))
    async with clients(app, VICTIM, new_device, *bots) as (own, new, *botnet):
        assert (await login(own, victim.username, PASSWORD)).status_code == 200  # the victim's usual client
        for bot in botnet:
            assert (await login(bot, victim.username, "guess")).status_code == 401
        refused = await login(new, victim.username, PASSWORD)
        allowed = await login(own, victim.username, PASSWORD)
    body = assert_problem(refused, 429, "too_many_login_attempts")
    assert "for this username;" in body["detail"]
    assert int(refused.headers["retry-after"]) >= 1
    assert allowed.status_code == 200, allowed.text


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "seen"),
    [
        ("", "127.0.0.1", "198.51.100.9", "127.0.0.1"),  # default: no proxy is believed, loopback neither
        ("10.0.0.1", "127.0.0.1", "198.51.100.9", "127.0.0.1"),  # a peer that is not the proxy
        ("127.0.0.1", "127.0.0.1", "198.51.100.9", "198.51.100.9"),
        # A client's own X-Forwarded-For is to the left of what our proxy appended.
        ("127.0.0.1", "127.0.0.1", "203.0.113.1, 198.51.100.9", "198.51.100.9"),
        # Chained trusted proxies are skipped from the right.
        ("127.0.0.1, 10.0.0.0/8", "127.0.0.1", "198.51.100.9, 10.1.2.3", "198.51.100.9"),
        ("127.0.0.1", "127.0.0.1", "not-an-address", "127.0.0.1"),
    ],
)
async def test_x_forwarded_for_counts_only_from_trusted_proxies(
    settings_for: Callable[..., ApiSettings],
    make_user: Any,
    audit_rows: Any,
    trusted: str,
    peer: str,
    forwarded: str,
    seen: str,
) -> None:
    user = make_user("clinician")
    app = create_app(settings_for(api_trusted_proxies=trusted))
    async with clients(app, (peer, 40000)) as (client,):
        response = await login(client, user.username, "wrong", **{"X-Forwarded-For": forwarded})
    assert response.status_code == 401
    [row] = audit_rows(actor_id=user.id, action="login")
    assert row["detail"]["client_ip"] == seen


async def test_a_forged_x_forwarded_for_does_not_escape_throttling(settings: ApiSettings, make_user: Any) -> None:
    user = make_user("clinician")
    async with clients(create_app(settings), ("127.0.0.1", 40000)) as (client,):
        statuses = [
            (await login(client, user.username, "wrong", **{"X-Forwarded-For": f"198.51.100.{n}"})).status_code
            for n in range(8)
        ]
    assert statuses[:5] == [401] * 5
    assert 429 in statuses[5:]


def test_trusted_proxies_must_be_addresses_or_networks(settings_for: Callable[..., ApiSettings]) -> None:
    with pytest.raises(ValueError, match="RPM_API_TRUSTED_PROXIES"):
        settings_for(api_trusted_proxies="127.0.0.1, proxy.example")


async def test_a_burst_of_concurrent_guesses_gets_no_more_than_the_budget_checked(
    settings: ApiSettings, make_user: Any
) -> None:
    victim = make_user("clinician")
    app = create_app(settings)
    # A clock that stands still: what is tested is the count, not how fast the machine is.
    app.state.login_limiter = LoginRateLimiter(
        max_per_user_and_client=5,
        max_per_client=20,
        max_per_user=20,
        window_seconds=300,
        max_delay_seconds=300,
        clock=lambda: 1000.0,
    )
    async with clients(app, ATTACKER) as (attacker,):
        responses = await asyncio.gather(*(login(attacker, victim.username, f"guess-{n}") for n in range(20)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [401] * 5 + [429] * 15
