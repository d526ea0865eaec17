"""Security headers on every answer (an ASGI middleware, so errors and 404s get them too).

- `Cache-Control: no-store` unless the endpoint chose otherwise: the answers carry health
  data, tokens or the caller's identity, none of which a shared or browser cache may keep.
- `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`.
- A Content-Security-Policy: `default-src 'none'; frame-ancestors 'none'` for data answers;
  for HTML pages (the interactive API docs) the inline scripts are allowed by their SHA-256
  hash and the scripts and styles by the origins FastAPI loads them from, nothing else, and
  no page may be framed (`frame-ancestors 'none'`, plus `X-Frame-Options: DENY` for old
  browsers); forms post only to this origin (`form-action 'self'`: the clinician pages).
- `Strict-Transport-Security` when the request came over TLS (directly, or as a trusted
  proxy reports with X-Forwarded-Proto).
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import re
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

from fastapi.openapi.docs import get_swagger_ui_html
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import clients
from api.settings import IPNetwork

HSTS: Final = "max-age=31536000; includeSubDomains"
DATA_CSP: Final = "default-src 'none'; frame-ancestors 'none'"
_INLINE_SCRIPT: Final = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)
# HTML pages are ours and small; past this size they are sent as they come, with no inline script allowed.
_MAX_BUFFERED_HTML: Final = 256 * 1024


def _origin(url: object) -> str:
    parts = urlsplit(str(url))
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _docs_origins() -> tuple[str, str]:
    """Origins of the Swagger UI assets and favicon, as FastAPI's defaults name them."""
    defaults = {name: p.default for name, p in inspect.signature(get_swagger_ui_html).parameters.items()}
    return _origin(defaults.get("swagger_js_url", "")), _origin(defaults.get("swagger_favicon_url", ""))


_ASSETS, _FAVICON = _docs_origins()


def page_csp(body: bytes | None) -> str:
    """The policy of an HTML page: its own inline scripts by hash, assets from their origins."""
    hashes = []
    if body is not None:
        for script in _INLINE_SCRIPT.findall(body):
            digest = base64.b64encode(hashlib.sha256(script).digest()).decode()
            hashes.append(f"'sha256-{digest}'")
    scripts = " ".join(["'self'", _ASSETS, *hashes]).strip()
    return (
        f"default-src 'none'; script-src {scripts}; style-src 'self' {_ASSETS} 'unsafe-inline'; "
        f"img-src 'self' data: {_FAVICON}; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[IPNetwork] = ()) -> None:
        self.app = app
        self.trusted_proxies = tuple(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_headers = Headers(scope=scope)
        peer = scope["client"][0] if scope.get("client") else None
        tls = (
            clients.scheme(
                peer, scope.get("scheme", "http"), request_headers.getlist("x-forwarded-proto"), self.trusted_proxies
            )
            == "https"
        )
        start: Message | None = None
        html_body = bytearray()

        def decorate(message: Message, body: bytes | None) -> None:
            headers = MutableHeaders(scope=message)
            if "cache-control" not in headers:
                headers["Cache-Control"] = "no-store"
            headers["X-Content-Type-Options"] = "nosniff"
            headers["Referrer-Policy"] = "no-referrer"
            if headers.get("content-type", "").startswith("text/html"):
                headers["Content-Security-Policy"] = page_csp(body)
                headers["X-Frame-Options"] = "DENY"
            else:
                headers["Content-Security-Policy"] = DATA_CSP
            if tls:
                headers["Strict-Transport-Security"] = HSTS

        async def wrapped(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if Headers(raw=message.get("headers", [])).get("content-type", "").startswith("text/html"):
                    start = message  # hold it until the page is complete, to hash its scripts
                    return
                decorate(message, None)
            elif message["type"] == "http.response.body" and start is not None:
                html_body.extend(message.get("body", b""))
                if message.get("more_body", False) and len(html_body) <= _MAX_BUFFERED_HTML:
                    return
                decorate(start, bytes(html_body) if len(html_body) <= _MAX_BUFFERED_HTML else None)
                await send(start)
                start = None
                message = {**message, "body": bytes(html_body)}
                html_body.clear()
            await send(message)

        await self.app(scope, receive, wrapped)
