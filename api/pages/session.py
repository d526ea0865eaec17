"""The page session helpers: render a template with the CSRF token, the signed-in user from
the session cookie (refreshed once when only the access token expired), cookies carried over."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from api.auth import service
from api.auth.schemas import Principal
from api.db import Pool
from api.dependencies import client_address, get_pool, get_settings, utc_now
from api.pages import cookies
from api.settings import ApiSettings

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("csrf", cookies.csrf_token(request))
    response = TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)
    cookies.keep_csrf(response, request)
    return response


def message_page(request: Request, principal: Principal | None, status: int, title: str, message: str) -> HTMLResponse:
    """A page that only says something (a refusal, a thing not found) with its status."""
    return render(request, "message.html", status_code=status, principal=principal, title=title, message=message)


async def page_principal(request: Request, response: Response) -> Principal | None:
    """The signed-in user from the session cookie; an expired access token is refreshed once
    with the refresh cookie (new cookies are set on `response`)."""
    access = request.cookies.get(cookies.ACCESS_COOKIE)
    if not access:
        return None
    settings: ApiSettings = get_settings(request)
    pool: Pool = get_pool(request)
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.authenticate(conn, settings=settings, token=access, client_ip=client_address(request))
        if isinstance(outcome, Principal):
            return outcome
        refresh = request.cookies.get(cookies.REFRESH_COOKIE)
        if outcome.code != "token_expired" or not refresh:
            return None
        tokens = await service.refresh(
            conn, settings=settings, refresh_token=refresh, client_ip=client_address(request), now=utc_now()
        )
        if isinstance(tokens, service.Refused):
            return None
        outcome = await service.authenticate(
            conn, settings=settings, token=tokens.access_token, client_ip=client_address(request)
        )
    if not isinstance(outcome, Principal):
        return None
    cookies.set_session(response, request, tokens)
    return outcome


async def form_fields(request: Request) -> dict[str, str]:
    """The submitted form's text fields (a file upload, which no page takes, is left out)."""
    raw = await request.form()
    return {key: value for key, value in raw.items() if isinstance(value, str)}


def copy_cookies(source: Response, target: Response) -> Response:
    for key, value in source.raw_headers:
        if key == b"set-cookie":
            target.raw_headers.append((key, value))
    return target
