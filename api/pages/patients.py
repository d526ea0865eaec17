"""The "My patients" page (`/patients`): the patients of the clinician's care teams, the one
with the most severe open alert first, with the latest NEWS2, the last reading of each device
and its age (a silent device marked so in words), and adherence. The list is the patients
service's (api/patients), as its JSON route answers it: access and audit are there."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.db import Pool
from api.dependencies import get_pool, get_settings, utc_now
from api.pages import patients_source
from api.pages.session import copy_cookies, page_principal, render
from api.settings import ApiSettings

router = APIRouter(include_in_schema=False)


@router.get("/patients", response_class=HTMLResponse)
async def my_patients_page(
    request: Request,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> Response:
    carrier = Response()
    principal = await page_principal(request, carrier)
    if principal is None:
        return RedirectResponse("/", status_code=303)
    if principal.role != "clinician":
        return copy_cookies(carrier, render(request, "not_clinician.html", status_code=403, principal=principal))
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        rows = await patients_source.my_patients(conn, principal, utc_now())
    page = render(request, "patients.html", principal=principal, section="patients", patients=rows)
    return copy_cookies(carrier, page)
