"""Dashboard sessions: the user pastes a token once; it lives in an HttpOnly cookie.

The cookie holds the bearer token itself (validated on every request by the daemon's
:class:`~tunewatch._auth.Authenticator`, so revoking the token ends the session). It is
``HttpOnly`` (no script can read it), ``SameSite=Strict`` (no cross-site request carries
it) and ``Secure`` when the page was served over HTTPS. Tokens never appear in URLs.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from tunewatch._auth import AuthError, Principal
from tunewatch.api._context import context

COOKIE = "tunewatch_session"
MAX_FORM_BYTES = 4096
SESSION_MAX_AGE_S = 8 * 3600


def principal(request: Request, permission: str = "read") -> Principal:
    """The caller by its ``Authorization`` header, else by its session cookie; raises
    :class:`AuthError` (401/403) otherwise."""
    header = request.headers.get("authorization")
    if header is None:
        token = request.cookies.get(COOKIE)
        header = f"Bearer {token}" if token else None
    return context(request).auth.authenticate(header, permission)


def check_token(request: Request, token: str) -> Principal:
    """Validate a pasted token for reading (raises :class:`AuthError`)."""
    return context(request).auth.authenticate(f"Bearer {token.strip()}", "read")


def form_field(body: bytes, name: str) -> str:
    """One field of an ``application/x-www-form-urlencoded`` body ('' when absent)."""
    if len(body) > MAX_FORM_BYTES:
        raise AuthError("the login form is too large", code="invalid_request", status=400)
    try:
        values = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10).get(name, [""])
    except ValueError as exc:
        raise AuthError(
            f"the login form is malformed: {exc}", code="invalid_request", status=400
        ) from exc
    return values[0]


def set_session(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token.strip(),
        max_age=SESSION_MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
