"""The clinician pages' session: login form with CSRF, HttpOnly SameSite=Strict cookies,
errors in words, role pages, logout ending the session (in-process app, real database)."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from tests.api.conftest import TestUser
from tests.api.support import PASSWORD

pytestmark = pytest.mark.anyio


def form_csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


async def page_login(client: httpx.AsyncClient, user: TestUser, password: str = PASSWORD) -> httpx.Response:
    page = await client.get("/")
    assert page.status_code == 200
    return await client.post(
        "/login", data={"username": user.username, "password": password, "csrf": form_csrf(page.text)}
    )


async def test_login_sets_session_cookies_and_opens_the_workspace(
    client: httpx.AsyncClient, make_user: Callable[..., TestUser]
) -> None:
    clinician = make_user("clinician")
    answer = await page_login(client, clinician)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/workspace"
    set_cookies = answer.headers.get_list("set-cookie")
    session = next(c for c in set_cookies if c.startswith("rpm_session="))
    assert "HttpOnly" in session
    assert "SameSite=strict" in session
    assert "Secure" not in session  # plain HTTP here; Secure when over TLS
    workspace = await client.get("/workspace")
    assert workspace.status_code == 200
    assert clinician.username in workspace.text
    csp = workspace.headers["content-security-policy"]
    assert "form-action 'self'" in csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    # Already signed in: the login page sends to the workspace.
    again = await client.get("/")
    assert again.status_code == 303


async def test_login_over_tls_marks_the_cookies_secure(
    settings_for: Callable[..., object], make_user: Callable[..., TestUser]
) -> None:
    from api.app import create_app
    from tests.api.conftest import running

    clinician = make_user("clinician")
    app = create_app(settings_for())  # type: ignore[arg-type]
    async with running(app) as client:
        client.base_url = httpx.URL("https://testserver")
        answer = await page_login(client, clinician)
    assert answer.status_code == 303
    session = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("rpm_session="))
    assert "Secure" in session


async def test_wrong_password_is_said_in_words_and_sets_no_session(
    client: httpx.AsyncClient, make_user: Callable[..., TestUser]
) -> None:
    clinician = make_user("clinician")
    answer = await page_login(client, clinician, password="not-the-password-at-all")
    assert answer.status_code == 401
    assert "username or password is not right" in answer.text
    assert not any(c.startswith("rpm_session=") for c in answer.headers.get_list("set-cookie"))
    assert (await client.get("/workspace")).status_code == 303


async def test_login_without_the_csrf_token_is_refused(
    client: httpx.AsyncClient, make_user: Callable[..., TestUser]
) -> None:
    clinician = make_user("clinician")
    await client.get("/")  # the CSRF cookie is set
    answer = await client.post("/login", data={"username": clinician.username, "password": PASSWORD})
    assert answer.status_code == 403
    assert "did not come from this site" in answer.text
    forged = await client.post("/login", data={"username": clinician.username, "password": PASSWORD, "csrf": "x" * 43})
    assert forged.status_code == 403
    assert not any(c.startswith("rpm_session=") for c in forged.headers.get_list("set-cookie"))


async def test_a_patient_is_sent_to_their_portal(
    client: httpx.AsyncClient, make_user: Callable[..., TestUser], make_patient: Callable[[], str]
) -> None:
    patient = make_user("patient", patient_id=make_patient())
    answer = await page_login(client, patient)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/me"
    page = await client.get("/workspace")
    assert page.status_code == 303
    assert page.headers["location"] == "/me"


async def test_logout_ends_the_session(client: httpx.AsyncClient, make_user: Callable[..., TestUser]) -> None:
    clinician = make_user("clinician")
    await page_login(client, clinician)
    access = client.cookies.get("rpm_session")
    assert access
    workspace = await client.get("/workspace")
    missing_token = await client.post("/logout", data={})
    assert missing_token.status_code == 403
    out = await client.post("/logout", data={"csrf": form_csrf(workspace.text)})
    assert out.status_code == 303
    assert (await client.get("/workspace")).status_code == 303
    # The session itself ended, not only the cookie: the old token no longer works on the API.
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {access}"})
    assert me.status_code == 401


async def test_static_stylesheet_is_served(client: httpx.AsyncClient) -> None:
    css = await client.get("/static/site.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
