"""HTTP endpoints of the clinician's alerts: the inbox, one alert, a person's moves, the
precision figures, and the live stream (server-sent events)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from api.alerts import service
from api.alerts.schemas import (
    DEFAULT_LIMIT,
    DEFAULT_WINDOW_DAYS,
    MAX_CURSOR_LENGTH,
    MAX_LIMIT,
    MAX_WINDOW_DAYS,
    UNRESOLVED,
    AcknowledgeBody,
    AlertDetail,
    AlertPage,
    AssignBody,
    InboxQuery,
    NoteBody,
    PrecisionRead,
    ResolveBody,
    Severity,
    SnoozeBody,
    Sort,
    State,
    decode_cursor,
)
from api.alerts.stream import AlertEventHub, alert_event_stream
from api.auth.dependencies import CurrentPrincipal, bearer_token, resolve_principal, unauthorized
from api.auth.schemas import Principal
from api.db import Pool
from api.dependencies import get_pool, get_settings, utc_now
from api.pages.cookies import ACCESS_COOKIE
from api.pages.endpoints import page_principal
from api.problems import Problem, problem_responses
from api.settings import ApiSettings

router = APIRouter(tags=["alerts"])

AlertId = Annotated[uuid.UUID, Path(description="Alert id")]
MAX_EVENT_ID: Final = 2**63 - 1
_ETAG_HEADER: Final[dict[str, Any]] = {
    "headers": {"ETag": {"description": "The alert's version: send it as If-Match", "schema": {"type": "string"}}}
}
_ALERT_READ_RESPONSES: Final = {**problem_responses(401, 404, 422), 200: _ETAG_HEADER}
_MOVE_RESPONSES: Final = {**problem_responses(401, 403, 404, 409, 412, 422), 200: _ETAG_HEADER}
IfMatch = Annotated[
    str | None,
    Header(max_length=200, description="Optional: the ETag of the alert as read; 412 if it changed since"),
]


def get_hub(request: Request) -> AlertEventHub:
    hub: AlertEventHub = request.app.state.alert_hub
    return hub


def _raise(refusal: service.Refusal) -> Problem:
    return Problem(refusal.status, refusal.code, refusal.detail)


@router.get(
    "/alerts",
    response_model=AlertPage,
    summary="The inbox: alerts of the caller's care teams' patients",
    description="Clinicians see the alerts of their care teams' patients, admins every patient's; other roles "
    "get 403. Unresolved alerts by default (`state` to choose). Sorted most severe first, then oldest first "
    "(`sort=severity`), or oldest first (`sort=age`). Keyset pages: pass `next_cursor` as `cursor` with the "
    "same filters and sort.",
    responses=problem_responses(401, 403, 422),
)
async def list_alerts(
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    state: Annotated[list[State] | None, Query(description="States to show (repeat); default unresolved")] = None,
    severity: Annotated[list[Severity] | None, Query(description="Severities to show (repeat)")] = None,
    rule: Annotated[str | None, Query(min_length=1, max_length=64, description="Only this rule")] = None,
    patient_id: Annotated[str | None, Query(min_length=1, max_length=64, description="Only this patient")] = None,
    assignee: Annotated[str | None, Query(max_length=36, description="'me', 'none' (unassigned) or a user id")] = None,
    sort: Annotated[Sort, Query(description="severity (then oldest first) or age (oldest first)")] = "severity",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Alerts per page")] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH, description="next_cursor of a page")] = None,
) -> AlertPage:
    parsed_assignee = service.parse_assignee(assignee, principal)
    after = None if cursor is None else decode_cursor(cursor)
    refusal: service.Refusal | None = None
    if isinstance(parsed_assignee, service.Refusal):
        refusal, parsed_assignee = parsed_assignee, None
    elif cursor is not None and (after is None or after.sort != sort):
        refusal = service.Refusal(422, "invalid_cursor", "cursor is not a next_cursor of this sort; start without one")
    if refusal is not None:
        async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
            await service.refuse(conn, principal, "list", refusal)
        raise _raise(refusal)
    query = InboxQuery(
        states=tuple(dict.fromkeys(state)) if state else UNRESOLVED,
        severities=tuple(dict.fromkeys(severity or ())),
        rule=rule,
        patient_id=patient_id,
        assignee=parsed_assignee,
        sort=sort,
        limit=limit,
        after=after,
    )
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.list_alerts(conn, principal, query)
    if isinstance(outcome, service.Refusal):
        raise _raise(outcome)
    return outcome


@router.get(
    "/alerts/precision",
    response_model=PrecisionRead,
    summary="Precision per rule and alerts per patient-day",
    description="Over the caller's care teams' patients (an admin: all) and the last `days` days: per rule, the "
    "alerts resolved by a person, how many of them were actionable, and precision = actionable ÷ resolved by a "
    "person (self-resolved alerts do not count); and alerts opened per patient-day.",
    responses=problem_responses(401, 403, 422),
)
async def precision(
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    days: Annotated[int, Query(ge=1, le=MAX_WINDOW_DAYS, description="Window in days")] = DEFAULT_WINDOW_DAYS,
) -> PrecisionRead:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.figures(conn, principal, days, utc_now())
    if isinstance(outcome, service.Refusal):
        raise _raise(outcome)
    return outcome


async def stream_principal(request: Request, response: Response, token: str | None) -> Principal:
    """The bearer token, or else the pages' session cookie (a browser's EventSource cannot send
    headers)."""
    if token:
        outcome = await resolve_principal(request, token)
        if isinstance(outcome, Principal):
            return outcome
        raise unauthorized(outcome.code, outcome.detail)
    if request.cookies.get(ACCESS_COOKIE):
        principal = await page_principal(request, response)
        if principal is not None:
            request.state.principal = principal
            return principal
        raise unauthorized("invalid_token", "the session cookie is not valid; sign in again")
    raise unauthorized("not_authenticated", "an access token or a session cookie is required")


_STREAM_DESCRIPTION: Final = (
    "Server-sent events (`text/event-stream`; send `Accept: text/event-stream`, else 406) of every new history "
    "row of the alerts of the caller's care teams' patients (an admin: all). Each event's `id:` is the "
    "history row's id and its `data:` a JSON object (id, alert_id, patient_id, kind, at, actor_id, from_state, "
    "to_state, detail, and the alert's rule, severity, state, title). Resume with the `Last-Event-ID` header "
    "(or `last_event_id`): the missed events in scope are sent first, then live ones, none twice. A comment "
    "every 15 s keeps the connection open. Authorised by a bearer token or the pages' session cookie."
)


@router.get(
    "/alerts/stream",
    summary="Live alert events (server-sent events), resumable with Last-Event-ID",
    description=_STREAM_DESCRIPTION,
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": "The event stream"},
        **problem_responses(401, 403, 406, 422),
    },
)
async def stream(
    request: Request,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    hub: Annotated[AlertEventHub, Depends(get_hub)],
    token: Annotated[str | None, Depends(bearer_token)],
    last_event_id_header: Annotated[
        int | None, Header(alias="Last-Event-ID", ge=0, le=MAX_EVENT_ID, description="Resume after this event")
    ] = None,
    last_event_id: Annotated[
        int | None, Query(ge=0, le=MAX_EVENT_ID, description="Resume after this event (for clients without headers)")
    ] = None,
) -> StreamingResponse:
    cookies = Response()
    principal = await stream_principal(request, cookies, token)
    if "text/event-stream" not in request.headers.get("accept", ""):
        refusal = service.Refusal(
            406, "not_acceptable", "this route answers only text/event-stream; send that Accept header"
        )
        async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
            await service.refuse(conn, principal, "stream", refusal)
        raise _raise(refusal)
    resume = last_event_id_header if last_event_id_header is not None else last_event_id
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        scope = await service.open_stream(conn, principal, resume)
    if isinstance(scope, service.Refusal):
        raise _raise(scope)
    answer = StreamingResponse(
        alert_event_stream(hub, pool, scope, resume),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
    for key, value in cookies.raw_headers:
        if key.lower() == b"set-cookie":
            answer.raw_headers.append((key, value))
    return answer


@router.get(
    "/alerts/{alert_id}",
    response_model=AlertDetail,
    summary="One alert with its history",
    description="For a clinician or admin who may see the alert's patient (break-glass included); any other "
    "caller, and an id that does not exist, gets 404.",
    responses=_ALERT_READ_RESPONSES,
)
async def read_alert(
    alert_id: AlertId,
    principal: CurrentPrincipal,
    response: Response,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
) -> AlertDetail:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.read_alert(conn, principal, alert_id)
    # Raised after the block: the audit event of a refusal is committed.
    if isinstance(outcome, service.Refusal):
        raise _raise(outcome)
    response.headers["ETag"] = service.etag(outcome.updated_at)
    return outcome


async def _move(
    pool: Pool,
    settings: ApiSettings,
    principal: Principal,
    alert_id: uuid.UUID,
    action: service.Action,
    body: Any,
    response: Response,
    if_match: str | None,
) -> AlertDetail:
    async with pool.connection(timeout=settings.db_acquire_timeout) as conn:
        outcome = await service.act(conn, principal, alert_id, action, body, utc_now(), if_match)
    if isinstance(outcome, service.Refusal):
        raise _raise(outcome)
    response.headers["ETag"] = service.etag(outcome.updated_at)
    return outcome


_MOVE_NOTE: Final = (
    " For a clinician of the patient's care team or an admin (403 under break-glass; 404 for anyone else). "
    "409 when the alert's state does not allow it."
)


@router.post(
    "/alerts/{alert_id}/acknowledge",
    response_model=AlertDetail,
    summary="Acknowledge an alert",
    description="open or snoozed → acknowledged: stops its escalation and cancels the e-mails and webhooks still "
    "queued for it." + _MOVE_NOTE,
    responses=_MOVE_RESPONSES,
)
async def acknowledge(
    alert_id: AlertId,
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    response: Response,
    if_match: IfMatch = None,
    body: AcknowledgeBody | None = None,
) -> AlertDetail:
    return await _move(
        pool, settings, principal, alert_id, "acknowledge", body or AcknowledgeBody(), response, if_match
    )


@router.post(
    "/alerts/{alert_id}/assign",
    response_model=AlertDetail,
    summary="Give an alert to a member of the patient's care team (or to nobody)",
    description="The assignee must be an enabled clinician or admin of one of the patient's care teams (422 "
    "otherwise); null takes it from whoever has it." + _MOVE_NOTE,
    responses=_MOVE_RESPONSES,
)
async def assign(
    alert_id: AlertId,
    body: AssignBody,
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    response: Response,
    if_match: IfMatch = None,
) -> AlertDetail:
    return await _move(pool, settings, principal, alert_id, "assign", body, response, if_match)


@router.post(
    "/alerts/{alert_id}/snooze",
    response_model=AlertDetail,
    summary="Snooze an alert for a while (at most 24 hours)",
    description="Mutes this alert only (another rule of the patient still alerts, and a rise of its own "
    "severity ends the snooze); stops its escalation and cancels what is queued for it." + _MOVE_NOTE,
    responses=_MOVE_RESPONSES,
)
async def snooze(
    alert_id: AlertId,
    body: SnoozeBody,
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    response: Response,
    if_match: IfMatch = None,
) -> AlertDetail:
    return await _move(pool, settings, principal, alert_id, "snooze", body, response, if_match)


@router.post(
    "/alerts/{alert_id}/resolve",
    response_model=AlertDetail,
    summary="Resolve an alert with a disposition",
    description="actionable, not_actionable, false_reading, duplicate, or other (with a note; 422 without). The "
    "disposition is what the precision figures count." + _MOVE_NOTE,
    responses=_MOVE_RESPONSES,
)
async def resolve(
    alert_id: AlertId,
    body: ResolveBody,
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    response: Response,
    if_match: IfMatch = None,
) -> AlertDetail:
    return await _move(pool, settings, principal, alert_id, "resolve", body, response, if_match)


@router.post(
    "/alerts/{alert_id}/notes",
    response_model=AlertDetail,
    summary="Add a note to an alert's history",
    description="Any state, resolved included." + _MOVE_NOTE,
    responses=_MOVE_RESPONSES,
)
async def add_note(
    alert_id: AlertId,
    body: NoteBody,
    principal: CurrentPrincipal,
    pool: Annotated[Pool, Depends(get_pool)],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    response: Response,
    if_match: IfMatch = None,
) -> AlertDetail:
    return await _move(pool, settings, principal, alert_id, "note", body, response, if_match)
