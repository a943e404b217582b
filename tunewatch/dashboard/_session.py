"""Dashboard sessions and the page wrapper every page renders through.

The login page takes a pasted token (validated for ``read``) and starts a server-side
session of it, named by an HttpOnly, SameSite=Strict cookie; sign-out ends the session.
Sign-in and sign-out posted by another site's page are refused (403). :func:`render_page`
sends a browser without a valid session to the login page, refuses a query the page does
not take as its ``/v1/dashboard`` JSON refuses one, and turns every error into an HTML
error page (never a 500 for an unknown model or a refused token; an unexpected failure is
logged with its traceback and answered with a 500 page, not the API's JSON).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from html import escape
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends
from fastapi.routing import APIRoute
from pydantic import BeforeValidator, Field, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from shadow import ShadowError
from tunewatch._auth import AuthError, Principal
from tunewatch._drift_report_builds import ReportBusyError
from tunewatch._errors import TunewatchError
from tunewatch.api._context import ascii_digits
from tunewatch.api._errors import ApiError, describe
from tunewatch.api._route import public, query_parameters, query_refusal

from ._auth import (
    check_same_origin,
    check_token,
    clear_session,
    end_session,
    form_field,
    principal,
    set_session,
    start_session,
)
from ._html import error_page, respond, shell

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/dashboard", include_in_schema=False)
LOGIN = "/dashboard/login"
UNEXPECTED_MESSAGE = "this page failed while it was drawn (an internal error); see the daemon's log"

T = TypeVar("T")


def page_number(low: int, high: int) -> TypeAdapter[int]:
    """A page's whole-number parameter in ``[low, high]``, spelt in ASCII digits only as
    the ``/v1`` routes read one: pydantic's lax ``int`` took ``1_0`` (10), ``+5``, ``5.0``
    and `` 5``, which the JSON behind the page refuses."""
    return TypeAdapter(Annotated[int, BeforeValidator(ascii_digits), Field(ge=low, le=high)])


def page_parameter(name: str, raw: str | None, adapter: TypeAdapter[T], rule: str) -> T:
    """A page's query or path parameter, read inside its render, once the session is
    checked: validated by FastAPI, a bad one was answered with JSON, before the session
    (a signed-out browser got a 400 instead of the sign-in). ``None`` stays ``None``
    for an optional parameter; the 400 names ``name`` and ``rule``."""
    try:
        return adapter.validate_python(raw)
    except PydanticValidationError as exc:
        raise ApiError(
            400, "invalid_request", f"`{name}` must be {rule}, got {str(raw)[:20]!r}"
        ) from exc


def check_page_query(request: Request) -> None:
    """Refuse (400 ``invalid_request``) a query parameter the page's route does not declare,
    or one repeated, as :class:`~tunewatch.dashboard._limit.ReadRoute` refuses it on the
    JSON behind the page: a misspelt ``?limti=1`` showed the default, ``?limit=1&limit=2``
    the last. Called once the session is checked (the sign-in first, as for a bad value)."""
    if not request.scope["query_string"]:
        return
    route = request.scope.get("route")
    if isinstance(route, APIRoute):
        methods = "/".join(sorted(route.methods or ()))
        takes, named = query_parameters(route.dependant), f"{methods} {route.path}"
    else:  # not reached through a route: it declares nothing, so takes nothing
        takes, named = {}, f"GET {request.url.path}"
    refusal = query_refusal(request.query_params, takes, named)
    if refusal is not None:
        raise ApiError(400, "invalid_request", refusal)


def render_page(
    request: Request,
    render: Callable[[Principal], str],
    *,
    answer: Callable[[str], Response] = respond,
) -> Response:
    """Authenticate by session, check the query, render, and answer every error with an
    HTML page: ours with their status (a busy one's with its ``Retry-After``), any other
    (a page's bug) with a logged 500. ``answer`` makes the rendered page a response (the
    dashboard's headers; the stored drift report's are its own)."""
    try:
        who = principal(request, "read")
    except AuthError as exc:
        if exc.status == 401:
            return RedirectResponse(LOGIN, status_code=303)
        return error_page(exc.status, exc.message, None)
    try:
        check_page_query(request)
        return answer(render(who))
    except (TunewatchError, ShadowError) as exc:
        # a store outage's fixed message, as the API answers: the driver's text (host,
        # port, user) and an artefact directory's path are the log's
        code, _, message = (
            describe(exc) if isinstance(exc, TunewatchError) else (400, "", exc.message)
        )
        if code >= 500:
            logger.error("dashboard page %s failed: %s", request.url.path, exc, exc_info=exc)
        page = error_page(code, message, who)
        if isinstance(exc, ReportBusyError):  # 429: every report build slot is taken
            page.headers["Retry-After"] = str(exc.retry_after_s)
        return page
    except Exception:  # the request's boundary: logged with its traceback, a 500 page
        # a page's own failure (a chart's, a payload it cannot
        # read) is the log's, with its traceback; the browser gets a page, not the API's
        # JSON 500, and nothing of the exception
        logger.exception("dashboard page %s failed unexpectedly", request.url.path)
        return error_page(500, UNEXPECTED_MESSAGE, who)


# -- session ----------------------------------------------------------------------------------


def _login_form(message: str = "") -> str:
    note = f'<p class="bad" role="alert">{escape(message)}</p>' if message else ""
    return shell(
        "Sign in",
        f'{note}<form method="post" action="{LOGIN}" autocomplete="off">'
        '<p><label for="token">API token</label><br>'
        '<input type="password" id="token" name="token" size="60" required '
        'autocomplete="off"></p><p><button type="submit">Sign in</button></p></form>'
        '<p class="muted">Paste a token with read access (viewer or above). It signs this '
        "browser in until you sign out, or until it goes unused or reaches its maximum age "
        "(the server's settings: 30 minutes and 8 hours by default); the browser keeps a "
        "session id, not the token.</p>",
        who=None,
    )


@router.get(LOGIN.removeprefix("/dashboard"), dependencies=[Depends(public)])
def login_page() -> HTMLResponse:
    return respond(_login_form())


def _replace_session(request: Request, who: Principal) -> str | None:
    """End the session the browser's cookie names, if any, then start ``who``'s: signing
    in as another left the first session alive on the server (the old cookie still opened
    the pages as the first person until it expired)."""
    end_session(request)
    return start_session(request, who)


@router.post(LOGIN.removeprefix("/dashboard"), dependencies=[Depends(public)])
async def login(request: Request) -> Response:
    try:
        check_same_origin(request)
        token = form_field(await request.body(), "token")
        who = await run_in_threadpool(check_token, request, token)
    except AuthError as exc:
        return respond(_login_form(exc.message), exc.status)
    session = await run_in_threadpool(_replace_session, request, who)
    response = RedirectResponse("/dashboard/", status_code=303)
    if session is not None:
        set_session(request, response, session)
    return response


@router.post("/logout", dependencies=[Depends(public)])
def logout(request: Request) -> Response:
    try:
        check_same_origin(request)
    except AuthError as exc:
        return error_page(exc.status, exc.message, None)
    end_session(request)
    response = RedirectResponse(LOGIN, status_code=303)
    clear_session(response)
    return response
