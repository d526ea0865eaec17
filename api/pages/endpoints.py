"""Page routes: `/` (log in), `/login`, `/logout`, `/workspace`.

After logging in a clinician lands on `/workspace`, a patient on `/me` (their portal, ADR 0027).

`/inbox` and `/patients` (api/pages/inbox.py, patients.py) and the admins' `/admin/privacy-flags`
(api/pages/privacy_flags.py) are included in this router.
Pages answer HTML, never problem documents; a page that needs a session and has none
redirects to `/`. Not part of the OpenAPI document (that describes the JSON API).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.audit import repository as audit_repository
from api.audit.schemas import AuditEvent
from api.auth import service
from api.auth.ratelimit import LoginRateLimiter
from api.db import Pool
from api.dependencies import client_address, get_login_limiter, get_password_work, get_pool, get_settings, utc_now
from api.pages import cookies, inbox, patients, privacy_flags
from api.pages.session import STATIC_DIR as STATIC_DIR  # re-exported: the app mounts it
from api.pages.session import copy_cookies as copy_cookies
from api.pages.session import page_principal as page_principal
from api.pages.session import render as render
from api.patients import repository as patients_repository
from api.portal import pages as portal_pages
from api.security import PasswordWork, decode_token
from api.settings import ApiSettings

router = APIRouter(include_in_schema=False)

PATIENT_HOME = "/me"
CLINICIAN_HOME = "/workspace"


def home_for(role: str) -> str:
    """Where a signed-in user starts: a patient in their portal, everyone else in the workspace."""
    return PATIENT_HOME if role == "patient" else CLINICIAN_HOME


# The inbox and my-patients pages come with this router (the app includes it once).
router.include_router(inbox.router)
router.include_router(patients.router)
# The privacy officer's queue (admins, ADR 0025).
router.include_router(privacy_flags.router)
# The patient's own pages (/me, ADR 0027).
router.include_router(portal_pages.router)


@router.get("/", response_class=HTMLResponse)
async def login_page(request: Request) -> Response:
    carrier = Response()
    principal = await page_principal(request, carrier)
    if principal is not None:
        return copy_cookies(carrier, RedirectResponse(home_for(principal.role), status_code=303))
    return render(request, "login.html", error=None, username="")


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    username: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=1024)],
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    limiter: Annotated[LoginRateLimiter, Depends(get_login_limiter)],
    passwords: Annotated[PasswordWork, Depends(get_password_work)],
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    if not cookies.csrf_ok(request, csrf):
        return render(
            request,
            "login.html",
            status_code=403,
            error="This form has expired or did not come from this site. Please try again.",
            username=username,
        )
    outcome = await service.login(
        lambda: pool.connection(timeout=settings.db_acquire_timeout),
        settings=settings,
        limiter=limiter,
        passwords=passwords,
        username=username,
        password=password,
        client_ip=client_address(request),
        now=utc_now(),
    )
    if isinstance(outcome, service.Refused):
        if outcome.status == 429:
            error = f"Too many failed attempts. Please wait {outcome.retry_after} seconds and try again."
        else:
            error = "The username or password is not right. Please try again."
        response = render(request, "login.html", status_code=outcome.status, error=error, username=username)
        if outcome.retry_after is not None:
            response.headers["Retry-After"] = str(outcome.retry_after)
        return response
    # The token was signed a moment ago by us; reading its role back costs no database round trip.
    claims = decode_token(outcome.access_token, key=settings.jwt_secret.get_secret_value(), issuer=settings.jwt_issuer)
    redirect = RedirectResponse(home_for(claims.role), status_code=303)
    cookies.set_session(redirect, request, outcome)
    return redirect


@router.post("/logout")
async def logout(
    request: Request,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    if not cookies.csrf_ok(request, csrf):
        return render(
            request,
            "message.html",
            status_code=403,
            title="Form expired",
            message="This form has expired or did not come from this site. Go back and try again.",
        )
    carrier = Response()
    principal = await page_principal(request, carrier)
    if principal is not None:
        async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
            await service.logout(conn, principal, now=utc_now())
    response = RedirectResponse("/", status_code=303)
    cookies.clear_session(response)
    return response


@router.get("/workspace", response_class=HTMLResponse)
async def workspace(request: Request) -> Response:
    carrier = Response()
    principal = await page_principal(request, carrier)
    if principal is None:
        return RedirectResponse("/", status_code=303)
    if principal.role == "patient":
        return copy_cookies(carrier, RedirectResponse(PATIENT_HOME, status_code=303))
    if principal.role != "clinician":
        page = render(request, "not_clinician.html", principal=principal)
    else:
        pool: Pool = get_pool(request)
        settings: ApiSettings = get_settings(request)
        async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
            names = await patients_repository.team_patients(conn, principal.user_id)
            patients = sorted(names.items())
            # Names of one's patients are health data: the list is audited like any read.
            await audit_repository.record(
                conn,
                AuditEvent(
                    action="read",
                    resource="pages/workspace",
                    outcome="allowed",
                    actor_id=principal.user_id,
                    actor_role=principal.role,
                    detail={"returned": len(patients)},
                ),
            )
        page = render(request, "workspace.html", principal=principal, patients=patients)
    return copy_cookies(carrier, page)
