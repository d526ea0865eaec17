"""Screening of every request's inputs before any endpoint sees them.

PostgreSQL `text` cannot hold a NUL character, and no identifier, metric, password or date
of ours ever contains one: a NUL in a path parameter, query parameter, form field or JSON
string is refused here, for every route at once (`screen_inputs` is an app-wide
dependency), as the same 422 problem a schema violation gets. The refusal names where the
NUL was, never the value sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from fastapi import Request
from fastapi.exceptions import RequestValidationError

NUL: Final = "\x00"
_FORM_TYPES: Final = ("application/x-www-form-urlencoded", "multipart/form-data")
# Deeply nested JSON is walked iteratively; past this many values the body is not ours to
# screen any further (the endpoint's own model refuses what it does not expect).
_MAX_JSON_VALUES: Final = 100_000


def _printable(name: str | int) -> str | int:
    # Field names are echoed in the answer: never the NUL itself, never a megabyte of name.
    return name if isinstance(name, int) else name.replace(NUL, "\\0")[:64]


def _nul_error(*loc: str | int) -> dict[str, Any]:
    return {
        "loc": tuple(_printable(part) for part in loc),
        "msg": "must not contain a NUL character",
        "type": "nul_character",
        "input": None,
    }


def _json_strings(document: Any) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string (keys included) of a parsed JSON document with its location."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), document)]
    seen = 0
    while stack and seen < _MAX_JSON_VALUES:
        loc, value = stack.pop()
        seen += 1
        if isinstance(value, str):
            yield loc, value
        elif isinstance(value, dict):
            for key, item in value.items():
                yield (*loc, str(key)), str(key)
                stack.append(((*loc, str(key)), item))
        elif isinstance(value, list):
            stack.extend(((*loc, index), item) for index, item in enumerate(value))


async def nul_errors(request: Request) -> list[dict[str, Any]]:
    """Validation errors for every input that holds a NUL (empty when there is none)."""
    errors = [_nul_error("path", name) for name, value in request.path_params.items() if NUL in str(value)]
    errors += [_nul_error("query", name) for name, value in request.query_params.multi_items() if NUL in name + value]
    if request.method in ("GET", "HEAD", "OPTIONS", "DELETE"):
        return errors
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type in _FORM_TYPES:
            # Parsed (and cached by Starlette) already when the route takes a form.
            form = await request.form()
            errors += [
                _nul_error("body", name)
                for name, value in form.multi_items()
                if NUL in name or (isinstance(value, str) and NUL in value)
            ]
        elif content_type == "application/json" or content_type.endswith("+json"):
            document = await request.json()
            errors += [_nul_error("body", *loc) for loc, text in _json_strings(document) if NUL in text]
    except Exception:  # an unparsable body is the endpoint's to refuse, with its own message
        return errors
    return errors


async def screen_inputs(request: Request) -> None:
    """App-wide dependency: refuse a request with a NUL anywhere in its inputs (422)."""
    errors = await nul_errors(request)
    if errors:
        raise RequestValidationError(errors)
