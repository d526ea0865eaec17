"""The page session: access and refresh tokens in HttpOnly cookies, and the CSRF token.

The JSON API keeps bearer tokens; only the pages read these cookies. Every form POST carries
a `csrf` field that must equal the `rpm_csrf` cookie (double submit); the cookies are also
SameSite=Strict, so a form on another site neither sends them nor can read the token.
"""

from __future__ import annotations

import secrets
from typing import Final

from fastapi import Request, Response

from api import clients
from api.auth.schemas import TokenRead
from api.dependencies import get_settings

ACCESS_COOKIE: Final = "rpm_session"
REFRESH_COOKIE: Final = "rpm_refresh"
CSRF_COOKIE: Final = "rpm_csrf"


def over_tls(request: Request) -> bool:
    settings = get_settings(request)
    peer = request.client.host if request.client else None
    proto = request.headers.getlist("x-forwarded-proto")
    return clients.scheme(peer, request.url.scheme, proto, settings.trusted_proxy_networks) == "https"


def _set(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", httponly=True, secure=over_tls(request), samesite="strict"
    )


def set_session(response: Response, request: Request, tokens: TokenRead) -> None:
    _set(response, request, ACCESS_COOKIE, tokens.access_token, tokens.refresh_expires_in)
    if tokens.refresh_token:
        _set(response, request, REFRESH_COOKIE, tokens.refresh_token, tokens.refresh_expires_in)


def clear_session(response: Response) -> None:
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        response.delete_cookie(name, path="/", httponly=True, samesite="strict")


def csrf_token(request: Request) -> str:
    """The request's CSRF token: the cookie's, or a new one (set on the answer by `keep_csrf`)."""
    token = request.cookies.get(CSRF_COOKIE)
    if token is None or not 20 <= len(token) <= 100:
        token = getattr(request.state, "new_csrf", None) or secrets.token_urlsafe(32)
        request.state.new_csrf = token
    return token


def keep_csrf(response: Response, request: Request) -> None:
    new = getattr(request.state, "new_csrf", None)
    if new is not None:
        # 12 h: as long as a session may last; a page older than that asks for a fresh form.
        _set(response, request, CSRF_COOKIE, new, 12 * 3600)


def csrf_ok(request: Request, submitted: str | None) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE)
    return bool(cookie and submitted) and secrets.compare_digest(str(cookie), str(submitted))
