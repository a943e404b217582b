"""Dashboard sessions: the user pastes a token once; the server keeps a session of it.

Signing in stores a session on the server (:meth:`~tunewatch.store.Store.start_session`):
a random id, kept there only as its sha256, with the token's name and an expiry one idle
window on (``server.dashboard_session_idle_s``, 30 minutes by default) by the database's
clock. The cookie holds that id, never the token, so it is no bearer token for the API.
Every request looks the session up and carries its expiry a full idle window on, never
past ``server.dashboard_session_max_s`` (8 hours) from sign-in: a browser left signed in
and unused is signed out. Signing out deletes the session, a session past its expiry
reads as none, and revoking the token ends its sessions. The cookie is
``HttpOnly`` (no script can read it), ``SameSite=Strict`` (no cross-site request carries
it) and ``Secure`` when the page was served over HTTPS. Tokens never appear in URLs.

SameSite restricts sending the cookie, not storing one: a page on another site could
auto-submit the login form with the attacker's token and sign the victim in as the
attacker (login CSRF). :func:`check_same_origin` refuses such posts by the headers a
browser sets and a page cannot forge (``Sec-Fetch-Site``, else ``Origin`` against
``Host`` or a proxy's ``X-Forwarded-Host``, which a form cannot set either); a client
that sends neither (curl, a script) is no browser a page could drive, and passes.

A limited dashboard route knows its caller before it takes a read slot
(:func:`identify`), so a request without valid credentials never holds one: a bearer token
is answered from the look-up the inference front made before the route, on the event loop;
a session is a database read, in a worker thread, at most :data:`MAX_SESSION_LOOKUPS` at
once on the event loop (the process), the next waiting for one without holding a thread.
The outcome is kept on the request, and :func:`principal` answers from it.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from functools import partial
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit

import anyio
from starlette.requests import Request
from starlette.responses import Response

from tunewatch._auth import AuthError, Principal, hash_token
from tunewatch._errors import TunewatchError
from tunewatch.api._context import context
from tunewatch.api._lookups import LookupBound

COOKIE = "tunewatch_session"
MAX_FORM_BYTES = 4096
# Session look-ups in progress at once, per event loop (one per process): a look-up is one
# indexed read, so a few keep signed-in viewers answered while requests with made-up
# cookies take no more of the worker threads (anyio's default 40) than this; the dashboard
# reads themselves have their own 2 (:mod:`tunewatch.dashboard._limit`).
MAX_SESSION_LOOKUPS = 4

T = TypeVar("T")
# the caller :func:`identify` found: (permission, the principal or the refusal)
_CALLER = "tunewatch.dashboard.caller"
# apart from the API's bearer-token look-ups (:mod:`tunewatch.api._lookups`): a flood of
# made-up tokens does not hold up signed-in viewers
_sessions = LookupBound("tunewatch.dashboard.session_lookups", MAX_SESSION_LOOKUPS)


def session_lookups() -> anyio.CapacityLimiter:
    """The running event loop's bound on session look-ups (:data:`MAX_SESSION_LOOKUPS`)."""
    return _sessions.limiter()


async def bounded_lookup(look_up: Callable[[], T]) -> T:
    """``look_up()`` in a worker thread, once fewer than :data:`MAX_SESSION_LOOKUPS` run;
    until then it waits on the event loop, holding no thread."""
    return await _sessions.run(look_up)


async def identify(request: Request, permission: str = "read") -> Principal | None:
    """The caller, if it may ``permission``; ``None`` if it is refused (401, 403, or the
    store failed). Called before a read slot is taken; the outcome is kept on the request,
    so :func:`principal` answers from it, raising the refusal, without looking again.

    A request with neither token nor cookie is refused at once; a bearer token from the
    authenticator's cache, which the inference front filled before the route (looked up
    again, bounded, only if the answer expired since); a session cookie in a bounded
    look-up (:func:`bounded_lookup`)."""
    known = request.scope.get(_CALLER)
    if known is None or known[0] != permission:
        known = request.scope[_CALLER] = (permission, await _look_up(request, permission))
    return known[1] if isinstance(known[1], Principal) else None


async def _look_up(request: Request, permission: str) -> Principal | TunewatchError:
    auth = context(request).auth
    header = request.headers.get("authorization")
    try:
        if header is not None or not request.cookies.get(COOKIE) or auth.disabled:
            who = auth.authenticate_cached(header, permission)  # raises when refused
            if who is not None:
                return who
        return await bounded_lookup(partial(principal, request, permission))
    except TunewatchError as exc:  # AuthError, StoreError: the route answers them
        return exc


def principal(request: Request, permission: str = "read") -> Principal:
    """The caller by its ``Authorization`` header, else by its session cookie; raises
    :class:`AuthError` (401/403) otherwise. A session is read from the store on every
    request (call this off the event loop), unless :func:`identify` found the caller
    already."""
    known = request.scope.get(_CALLER)
    if known is not None and known[0] == permission:
        if isinstance(known[1], Principal):
            return known[1]
        raise known[1]
    auth = context(request).auth
    header = request.headers.get("authorization")
    session = request.cookies.get(COOKIE)
    if header is not None or not session or auth.disabled:
        return auth.authenticate(header, permission)
    runtime = context(request).runtime
    server = runtime.config.server
    token = runtime.store.session_token(
        hash_token(session),
        idle_s=server.dashboard_session_idle_s,
        max_s=server.dashboard_session_max_s,
    )
    if token is None:
        raise AuthError(
            "the dashboard session has ended or expired: sign in again",
            code="unauthenticated",
            status=401,
        )
    who = Principal(name=token.name, role=token.role)
    if not who.can(permission):
        raise AuthError(f"role {who.role!r} may not {permission}", code="forbidden", status=403)
    return who


def check_token(request: Request, token: str) -> Principal:
    """Validate a pasted token for reading (raises :class:`AuthError`).

    A token that is not printable ASCII is refused (401) before it is looked up, however
    it was stored: a cookie cannot carry it unescaped (``€`` made the sign-in a 500), an
    ``Authorization`` header sent as UTF-8 arrives read as Latin-1, and every token
    ``tunewatch`` makes is ``tw_`` and URL-safe characters."""
    token = token.strip()
    for at, char in enumerate(token):
        if not " " <= char <= "~":
            raise AuthError(
                f"the token must be printable ASCII (as every tunewatch token is), got "
                f"{_char_name(char)} at position {at + 1}",
                code="invalid_token",
                status=401,
            )
    return context(request).auth.authenticate(f"Bearer {token}", "read")


def _char_name(char: str) -> str:
    """A character named without echoing the secret around it: ``'€' (U+20AC)``; a
    control character by its code point only."""
    code = f"U+{ord(char):04X}"
    return f"{char!r} ({code})" if char.isprintable() else code


def check_same_origin(request: Request) -> None:
    """Refuse (403 ``cross_site``) a form post another site's page made: ``Sec-Fetch-Site``
    must be ``same-origin`` (or ``none``, the user's own navigation) when sent; without it,
    an ``Origin`` must name this host, as the request's ``Host`` header does or, behind a
    proxy that rewrites ``Host``, its ``X-Forwarded-Host``."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site.lower() in ("same-origin", "none"):
            return
        raise AuthError(
            f"refused a cross-site post: Sec-Fetch-Site must be same-origin or none, got {site!r}",
            code="cross_site",
            status=403,
        )
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "")
    # Behind a proxy that rewrites Host (nginx's and Apache's defaults) the page's host is
    # in X-Forwarded-Host, one per proxy; a cross-site form cannot set that header.
    forwarded = request.headers.get("x-forwarded-host", "")
    hosts = {h.strip().lower() for h in (host, *forwarded.split(","))} - {""}
    try:
        netloc = urlsplit(origin).netloc.lower() if origin != "null" else None
    except ValueError:  # "http://[::1": refused like any other host's
        netloc = None
    if netloc in hosts:
        return
    names = f"{host!r}" + (f" or X-Forwarded-Host {forwarded!r}" if forwarded else "")
    raise AuthError(
        f"refused a cross-site post: Origin must be this daemon's host {names}, got {origin!r}",
        code="cross_site",
        status=403,
    )


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


def start_session(request: Request, who: Principal) -> str | None:
    """Store a session of ``who``'s token; its id, for the cookie (``None`` with
    authentication off, when no token signs anyone in)."""
    if context(request).auth.disabled:
        return None
    session = secrets.token_urlsafe(32)
    runtime = context(request).runtime
    runtime.store.start_session(
        session_hash=hash_token(session),
        token_name=who.name,
        ttl_s=runtime.config.server.dashboard_session_idle_s,
    )
    return session


def end_session(request: Request) -> None:
    """Delete the session the request's cookie names, if any."""
    session = request.cookies.get(COOKIE)
    if session:
        context(request).runtime.store.end_session(hash_token(session))


def set_session(request: Request, response: Response, session: str) -> None:
    """The session cookie lasts the session's maximum: the server ends it sooner when
    it is left idle."""
    response.set_cookie(
        COOKIE,
        session,
        max_age=math.ceil(context(request).runtime.config.server.dashboard_session_max_s),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
