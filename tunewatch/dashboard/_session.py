"""Dashboard sessions and the page wrapper every page renders through.

The login page takes a pasted token (validated for ``read``) and starts a server-side
session of it, named by an HttpOnly, SameSite=Strict cookie; sign-out ends the session.
Sign-in and sign-out posted by another site's page are refused (403). :func:`render_page`
sends a browser without a valid session to the login page and turns our errors into HTML
error pages (never a 500 for an unknown model or a refused token).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from html import escape
from typing import TypeVar

from fastapi import APIRouter, Depends
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from shadow import ShadowError
from tunewatch._auth import AuthError, Principal
from tunewatch._errors import TunewatchError
from tunewatch.api._errors import ApiError, describe
from tunewatch.api._route import public

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

T = TypeVar("T")


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


def render_page(request: Request, render: Callable[[Principal], str]) -> Response:
    """Authenticate by session, render, and turn our errors into HTML pages."""
    try:
        who = principal(request, "read")
    except AuthError as exc:
        if exc.status == 401:
            return RedirectResponse(LOGIN, status_code=303)
        return error_page(exc.status, exc.message, None)
    try:
        return respond(render(who))
    except (TunewatchError, ShadowError) as exc:
        # a store outage's fixed message, as the API answers: the driver's text (host,
        # port, user) and an artefact directory's path are the log's
        code, _, message = (
            describe(exc) if isinstance(exc, TunewatchError) else (400, "", exc.message)
        )
        if code >= 500:
            logger.error("dashboard page %s failed: %s", request.url.path, exc, exc_info=exc)
        return error_page(code, message, who)


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
