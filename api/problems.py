"""Errors as RFC 9457 problem details (`application/problem+json`).

Every error answer carries `type`, `title`, `status`, `detail`, `instance` and a stable
`code` that clients may switch on (titles and details are for people and may change).
Handlers here turn our own `Problem`, Starlette's HTTP errors, request validation errors,
an unreachable database and any unexpected exception into that shape: never a bare 500.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg import OperationalError
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.logging import get_logger

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
# A tag URI (RFC 4151), as RFC 9457 §3.1.1 suggests for types that do not resolve to a page.
PROBLEM_TYPE_BASE: Final = "tag:rpm-platform,2025:problem:"

log = get_logger(__name__)


class ProblemDetails(BaseModel):
    """The body of every error answer (for the OpenAPI document)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="URI naming the kind of problem")
    title: str = Field(description="Short human summary of the kind of problem")
    status: int = Field(description="HTTP status code")
    detail: str = Field(description="What went wrong with this request")
    instance: str | None = Field(None, description="Path of the request")
    code: str = Field(description="Stable machine-readable code")


class Problem(Exception):  # noqa: N818 - named after the RFC 9457 concept, not an "Error"
    """Raise to answer with a problem document."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})


def request_path(request: Request) -> str:
    """The path as the client sent it (percent-encoded): a decoded path may hold control
    characters such as NUL that have no business in an answer or a log."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes):
        return raw.decode("latin-1")
    return quote(request.url.path, safe="/:@!$&'()*+,;=-._~")


def problem_response(
    request: Request | None,
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """Build a problem+json response (also used where no exception is raised)."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if request is not None:
        body["instance"] = request_path(request)
    body.update(extensions or {})
    return JSONResponse(body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_MEDIA_TYPE)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting the problem answers of an operation."""
    return {
        status: {
            "model": ProblemDetails,
            "content": {PROBLEM_MEDIA_TYPE: {}},
            "description": HTTPStatus(status).phrase,
        }
        for status in statuses
    }


# Codes for Starlette's own HTTP errors (unknown route, wrong method, ...).
_HTTP_CODES: Final = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


async def _handle_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(
        request,
        exc.status,
        exc.code,
        exc.detail,
        title=exc.title,
        headers=exc.headers,
        extensions=exc.extensions,
    )


async def _handle_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no resource at {request_path(request)}"
    return problem_response(request, exc.status_code, code, detail, headers=exc.headers)


def error_entries(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation errors as the problem document lists them.

    Only location, message and type: pydantic's `input` would echo what the client sent,
    which can be a password (login form) or health data.
    """
    return [
        {
            "loc": [str(p) for p in err.get("loc", ())],
            "message": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in errors
    ]


def validation_response(request: Request, errors: list[dict[str, Any]]) -> JSONResponse:
    """The 422 problem of a request that failed validation."""
    where = ", ".join(".".join(e["loc"]) + ": " + e["message"] for e in errors[:5])
    return problem_response(
        request,
        422,
        "validation_error",
        f"the request is not valid: {where}" if where else "the request is not valid",
        title="Request validation failed",
        extensions={"errors": errors},
    )


async def _handle_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_response(request, error_entries(exc.errors()))


async def _handle_database_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable", path=request_path(request), error=type(exc).__name__)
    return problem_response(
        request,
        503,
        "database_unavailable",
        "the database is busy or not reachable; try again shortly",
        headers={"Retry-After": "5"},
    )


class UnhandledErrorMiddleware:
    """Turn an unexpected exception into a 500 problem document, logged once.

    Sits inside Starlette's ServerErrorMiddleware (which would answer in text/plain and
    log again) and outside the router's exception handlers, so only true bugs arrive here.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error", path=scope.get("path"), method=scope.get("method"))
            if started:
                raise  # too late for a problem document; let the server close the connection
            response = problem_response(
                None,
                500,
                "internal_error",
                "an unexpected error occurred; it has been logged",
                extensions={"instance": scope.get("path", "")},
            )
            await response(scope, receive, send)


def install_problem_handlers(app: FastAPI) -> None:
    """Register the handlers and the middleware on an app."""
    app.add_exception_handler(Problem, _handle_problem)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(PoolTimeout, _handle_database_down)
    app.add_exception_handler(OperationalError, _handle_database_down)
    app.add_middleware(UnhandledErrorMiddleware)
