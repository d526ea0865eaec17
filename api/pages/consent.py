"""The patient's consent page `/me/consent` (ADR 0024): each tier in plain words, where it
stands, a yes/no form per tier, and the history.

Calls the consents service (api/consents) as its JSON routes do; access, audit and the rules
of giving and withdrawing are the service's. A change answers with a redirect to the page
(post/redirect/get), which says what was saved or, by a fixed code, why not. Withdrawing
`collect` or `share_care_team` asks once more, on a page of its own, before anything is saved.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.auth.schemas import Principal
from api.consents import service
from api.consents.schemas import ConsentChange, ConsentsRead, Tier
from api.db import Pool
from api.dependencies import get_pool, get_settings, utc_now
from api.pages import cookies
from api.pages.session import copy_cookies, form_fields, message_page, page_principal, render
from api.portal.text import t
from api.settings import ApiSettings

router = APIRouter(include_in_schema=False)

PAGE: Final = "/me/consent"
# Saying no to these asks once more first (texts consent.confirm.<tier>.*).
_CONFIRM: Final[frozenset[str]] = frozenset({"collect", "share_care_team"})
# Refusal codes the page explains (anything else: the generic "could not save").
_ERRORS: Final = {
    "already_given": "consent.error.already_given",
    "not_given": "consent.error.not_given",
    "unknown_document_version": "consent.error.new_text",
}


def when(at: datetime | None) -> str:
    return "" if at is None else at.strftime("%d %b %Y, %H:%M UTC")


def _tier_words(tier: str) -> str:
    return t(f"consent.tier.{tier}")


def _page(
    request: Request, principal: Principal, read: ConsentsRead, *, notice: str | None, error: str | None
) -> HTMLResponse:
    tiers = []
    recorded = {event.tier for event in read.history}
    for state in read.tiers:
        version = state.current_document_version
        if state.state == "given" and state.tier not in recorded:
            # Agreed to at enrolment with nothing written down (ADR 0024: sharing).
            status = t("consent.state.enrolment")
        elif state.state == "given":
            status = t("consent.state.given", date=when(state.since))
        elif state.state == "withdrawn":
            status = t("consent.state.withdrawn", date=when(state.since))
        else:
            status = t("consent.state.not_given")
        tiers.append(
            {
                "tier": state.tier,
                "name": _tier_words(state.tier),
                "state": state.state,
                "status": status,
                "what": t(f"consent.doc.{version}.what"),
                "withdraw": t(f"consent.doc.{version}.withdraw", seconds=service.COLLECT_STOP_WITHIN_S),
                "version": version,
            }
        )
    history = [
        {
            "when": when(event.at),
            "choice": t(
                "consent.history.yes" if event.action == "given" else "consent.history.no",
                tier=_tier_words(event.tier),
            ),
            "version": event.document_version or t("consent.history.at_enrolment"),
        }
        for event in read.history
    ]
    return render(
        request,
        "me_consent.html",
        principal=principal,
        section="consent",
        t=t,
        tiers=tiers,
        history=history,
        notice=notice,
        error=error,
    )


@router.get("/me/consent", response_class=HTMLResponse)
async def consent_page(
    request: Request,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> Response:
    carrier = Response()
    principal = await page_principal(request, carrier)
    if principal is None:
        return RedirectResponse("/", status_code=303)
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        read = await service.read_mine(conn, principal)
    if isinstance(read, service.Refusal):
        page = message_page(request, principal, read.status, t("consent.title"), t("consent.error.not_patient"))
        return copy_cookies(carrier, page)
    notice = error = None
    done, tier = request.query_params.get("done"), request.query_params.get("tier")
    if done in ("given", "withdrawn") and tier in service.TIERS:
        notice = t(f"consent.done.{done}", tier=_tier_words(tier))
    code = request.query_params.get("error")
    if code is not None:
        error = t(_ERRORS.get(code, "consent.error.unavailable"))
    return copy_cookies(carrier, _page(request, principal, read, notice=notice, error=error))


@router.post("/me/consent/{tier}", response_class=HTMLResponse)
async def consent_change(
    request: Request,
    tier: Annotated[Tier, Path()],
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> Response:
    carrier = Response()
    principal = await page_principal(request, carrier)
    if principal is None:
        return RedirectResponse("/", status_code=303)
    form = await form_fields(request)
    if not cookies.csrf_ok(request, form.get("csrf")):
        return copy_cookies(
            carrier, message_page(request, principal, 403, t("consent.error.form.title"), t("consent.error.form"))
        )
    action = form.get("action")
    if action not in ("give", "withdraw"):
        return copy_cookies(carrier, RedirectResponse(f"{PAGE}?error=invalid", status_code=303))
    if tier in _CONFIRM and action == "withdraw" and form.get("confirm") != "yes":
        # Stopping collection or sharing stops the care team's view of new readings: one more look first.
        current = service.TIERS[tier].current_version
        page = render(
            request,
            "me_consent_confirm.html",
            principal=principal,
            section="consent",
            t=t,
            tier=tier,
            tier_name=_tier_words(tier),
            withdraw=t(f"consent.doc.{current}.withdraw", seconds=service.COLLECT_STOP_WITHIN_S),
        )
        return copy_cookies(carrier, page)
    # Longer than any version: cut, it then names no document and is refused as unknown.
    version = form.get("document_version", "")[:64] or None
    change = ConsentChange(action=action, document_version=version)
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.change_mine(conn, principal, tier, change, utc_now())
    if isinstance(outcome, service.Refusal):
        if outcome.status in (403, 404):
            page = message_page(request, principal, outcome.status, t("consent.title"), t("consent.error.not_patient"))
            return copy_cookies(carrier, page)
        return copy_cookies(carrier, RedirectResponse(f"{PAGE}?error={outcome.code}", status_code=303))
    done = "given" if action == "give" else "withdrawn"
    return copy_cookies(carrier, RedirectResponse(f"{PAGE}?done={done}&tier={tier}", status_code=303))
