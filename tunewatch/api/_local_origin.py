"""With authentication off, the daemon answers this machine's own clients only.

``auth.disabled: true`` makes every caller the anonymous admin, and is allowed only on a
loopback host (:func:`~tunewatch._config_sections.disabled_auth_refusal`). But every web
page the user opens runs on this machine too. A page of another site could send
``fetch(".../rollback", {mode: "no-cors", method: "POST", body: new Blob([json])})``, a
"simple" request a browser sends without asking first (a body without ``Content-Type``
is JSON here), and roll the champion back; a page whose name its owner rebinds to
127.0.0.1 (DNS rebinding) is, to the browser, of the daemon's own origin, and read the
whole API. So with authentication off, before anything else is done:

* a request whose ``Host`` names no loopback host (127.0.0.0/8, ``[::1]``,
  ``localhost``, with any port) is 421 ``misdirected_request``: a rebound page sends
  its own name;
* a request other than GET, HEAD or OPTIONS that a page of another origin made is 403
  ``cross_site``, by the dashboard sign-in's own check
  (:func:`~tunewatch.dashboard._auth.check_same_origin`: ``Sec-Fetch-Site`` when sent,
  else ``Origin`` against ``Host``).

Neither reads the body, so a refused request changes nothing. curl, tritonclient and
scripts send no ``Origin`` nor ``Sec-Fetch-Site`` and name the host they connect to, and
are answered as before. With authentication on none of this applies: a page of another
site has no token to send, and the dashboard's session cookie is ``SameSite=Strict``.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from tunewatch._auth import AuthError
from tunewatch._config_sections import LOOPBACK_HOSTS, is_loopback_host
from tunewatch.api._app import _template_of
from tunewatch.api._encoded_path import encoded_slash_refusal
from tunewatch.api._errors import ApiError
from tunewatch.api._front import _INFER, _ROUTES, InferenceFront
from tunewatch.dashboard._auth import check_same_origin

# A Host header: a name or IPv4 address, or an IPv6 address in brackets; then any port.
_HOST = re.compile(r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[^:@\[\]/\s]+))(?::\d*)?$")
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_WHY = "authentication is off (`auth.disabled: true`), so this daemon"


def _is_loopback(host: str) -> bool:
    match = _HOST.match(host)
    return match is not None and is_loopback_host(match["ipv6"] or match["name"])


def local_refusal(scope: Scope) -> ApiError | None:
    """Why a daemon with authentication off refuses the HTTP request ``scope``, or
    ``None``. A request without ``Host`` (HTTP/1.0) comes from no browser."""
    for name, value in scope["headers"]:
        if name == b"host" and not _is_loopback(host := value.decode("latin-1")):
            return ApiError(
                421,
                "misdirected_request",
                f"{_WHY} answers requests for a loopback host only ({LOOPBACK_HOSTS}, "
                f"with any port), got Host {host[:64]!r}",
            )
    if scope["method"] in _SAFE_METHODS:
        return None
    try:
        check_same_origin(Request(scope))
    except AuthError as exc:
        return ApiError(
            exc.status,
            exc.code,
            f"{_WHY} takes changes only from its own pages and from clients that are no "
            f"browser (curl, scripts): {exc}",
        )
    return None


class LocalOnlyFront(InferenceFront):
    """The inference front of a daemon with authentication off: every request, the
    inference routes' too, is first held to :func:`local_refusal`; one it lets through
    is then answered as by :class:`InferenceFront` (a path holding an encoded slash
    refused 404 before any route, as an unknown path after the same check)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = local_refusal(scope) if scope["type"] == "http" else None
        if refusal is None:
            await super().__call__(scope, receive, send)
            return
        match = _INFER.match(scope["path"])
        if encoded_slash_refusal(scope) is not None:
            route = "unmatched"  # its decoded path names a route its own path does not
        elif match:
            route = _ROUTES[match.group(2) is not None]
        else:
            route = _template_of({**scope, "app": self.app})
        await self.refuse(scope, send, route, refusal)
