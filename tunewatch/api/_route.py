"""The route class of the ``/v1`` management API: the caller's permission is checked
before the body is read, and a JSON body is read by the same strict parser as the scoring
routes.

FastAPI reads and parses a route's body before it runs the route's dependencies (where
the permission check lives), with a parser that accepts ``NaN`` and duplicate keys. So
without this any token holder could make the daemon read and parse bodies up to the
artefact limit, and ``{"reason": NaN}`` would pass. Here a request with a body must carry
a token with the route's permission (the ``require(...)`` dependencies it declares), the
body is read here (so a body over the limit is a 413 whatever its content type; a gzip
or deflate body is inflated only now, as it is read), and a body the route takes is
parsed strictly and handed to FastAPI already decoded. Like the inference routes, such
a body needs no ``Content-Type``; one that is not JSON (``curl -d`` sends a form's) is a
415 naming it. A route that takes no body (``/evaluate``, ``/compare``) holds one it is
sent to the same rules, and takes nothing but ``{}``: no body's fields are ignored.

A ``/v1`` route takes the query parameters it declares (and those of its dependencies)
and no others: an unknown one, or one repeated where the route reads a single value, is
400 ``invalid_request`` naming it and listing those the route takes. FastAPI ignored
them: ``GET /v1/jobs?stauts=failed`` listed every job, 200, ``?limit=5&limit=6`` read 6,
and ``POST .../rollback?dry_run=1`` rolled back. As with a body's unknown fields, the
caller's token is checked first: without one, 401; without the permission, 403. Routes
outside ``/v1`` (the probes, the scrape: their callers' tools may add parameters) read
the query as before; so do the ``/v2`` routes and the Alertmanager webhook, which are
not built here (the dashboard's JSON checks its own: ``tunewatch.dashboard._limit``).
The hand-written mirror and feedback routes, which take none, call
:func:`check_no_query`.

Deny by default: a route built by :class:`ApiRoute` must declare who may call it, a
``require(...)`` dependency (on the route or its ``APIRouter``) or the :func:`public`
marker (``dependencies=[Depends(public)]``); one with neither is refused when it is
built (``FastAPIError``, as the module declaring it is imported), never served open.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from email.message import Message
from typing import Any

from fastapi._compat import field_annotation_is_sequence
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import FastAPIError
from fastapi.routing import APIRoute
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from tunewatch.api._body import parse_json_async
from tunewatch.api._context import authenticate
from tunewatch.api._errors import ApiError


def check_json_type(content_type: str | None) -> None:
    """A ``/v1`` body is JSON with or without ``Content-Type: application/json``;
    another type (``curl -d`` sends a form's) is 415."""
    if content_type and not _is_json(content_type):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"the body must be JSON (Content-Type: application/json or none), got "
            f"Content-Type {content_type!r}",
        )


def _is_json(content_type: str) -> bool:
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


_JSON_KINDS: dict[type, str] = {
    list: "a JSON array",
    str: "a JSON string",
    bool: "a JSON boolean",
    int: "a JSON number",
    float: "a JSON number",
    type(None): "JSON null",
}


def public() -> None:
    """Marks a route anyone may call without a token (probes, scrapes, the API's own
    description, the dashboard's sign-in): ``@router.get("/healthz",
    dependencies=[Depends(public)])``. It checks nothing; :class:`ApiRoute` reads it."""


def _permissions(dependant: Dependant) -> tuple[str, ...]:
    """The permissions the route's ``require(...)`` dependencies ask for (any one will do)."""
    found: list[str] = []
    for dependency in dependant.dependencies:
        found.extend(getattr(dependency.call, "permissions", ()))
        found.extend(_permissions(dependency))
    return tuple(dict.fromkeys(found))


def _is_public(dependant: Dependant) -> bool:
    return any(d.call is public or _is_public(d) for d in dependant.dependencies)


def query_parameters(dependant: Dependant) -> dict[str, bool]:
    """The query parameters the route and its dependencies declare, in that order, by the
    name a request spells (the alias), each with whether it may repeat: a list parameter,
    which FastAPI reads with every value; any other reads one."""
    found: dict[str, bool] = {}
    for field in dependant.query_params:
        found.setdefault(field.alias, field_annotation_is_sequence(field.field_info.annotation))
    for dependency in dependant.dependencies:
        for name, repeats in query_parameters(dependency).items():
            found.setdefault(name, repeats)
    return found


_SHOWN = 32  # characters of a caller's parameter name or value quoted in a refusal


def _cut(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _listed(texts: list[str], most: int = 5) -> str:
    shown = ", ".join(repr(_cut(t)) for t in texts[:most])
    return shown + (f" and {len(texts) - most} more" if len(texts) > most else "")


def query_refusal(query: QueryParams, takes: Mapping[str, bool], named: str) -> str | None:
    """Why the route ``named`` (``"GET /v1/jobs"``) refuses ``query``, or ``None``: a
    parameter not among ``takes`` (name: may repeat), or one repeated that may not."""
    values: dict[str, list[str]] = {}
    for name, value in query.multi_items():
        values.setdefault(name, []).append(value)
    unknown = [name for name in values if name not in takes]
    if unknown:
        first = _cut(unknown[0])
        more = f" (nor {len(unknown) - 1} more: {_listed(unknown[1:])})" if unknown[1:] else ""
        return (
            f"query.{first}: {named} takes no query parameter {first!r}{more}; it takes "
            f"{', '.join(takes) or 'none'}"
        )
    for name, given in values.items():
        if len(given) > 1 and not takes[name]:
            return (
                f"query.{name}: {named} takes one value of {name!r}, got {len(given)}: "
                f"{_listed(given)}"
            )
    return None


def check_no_query(request: Request, named: str) -> None:
    """Refuse any query parameter (400 ``invalid_request``) on the hand-written ``/v1``
    route ``named``, which takes none; called after the caller's token is checked."""
    if request.scope["query_string"]:
        refusal = query_refusal(request.query_params, {}, named)
        if refusal is not None:
            raise ApiError(400, "invalid_request", refusal)


class ApiRoute(APIRoute):
    """A ``/v1`` route: its permission is checked before its body is read, a query
    parameter it does not declare is refused after that check, and a route that declares
    no permission and is not marked :func:`public` is refused when built."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # a body without a Content-Type is JSON too (checked and parsed below)
        super().__init__(*args, **{**kwargs, "strict_content_type": False})
        permissions, is_public = _permissions(self.dependant), _is_public(self.dependant)
        if permissions and is_public:
            raise FastAPIError(
                f"route {self._named()} is both public and requires {', '.join(permissions)}: "
                "drop one of `Depends(public)` and `require(...)`"
            )
        if not (permissions or is_public):
            raise FastAPIError(
                f"route {self._named()} declares no permission: add a `require(...)` "
                "dependency (e.g. a `Reader` parameter) or, if anyone may call it without "
                "a token, `dependencies=[Depends(public)]`"
            )

    def _named(self) -> str:
        return f"{'/'.join(sorted(self.methods or ()))} {self.path}"

    def _check_no_fields(self, parsed: Any) -> None:
        """A route that declares no body takes none, or ``{}`` (what a client that always
        sends a JSON object sends): any other body is 400 ``invalid_request``, as a field
        a route's body does not declare is."""
        if isinstance(parsed, dict):
            if parsed:
                fields = list(parsed)
                raise ApiError(
                    400,
                    "invalid_request",
                    f"{fields[0]}: {self._named()} takes no body fields (send no body, or "
                    f"{{}}), got {fields}",
                )
            return
        raise ApiError(
            400,
            "invalid_request",
            f"body: {self._named()} takes no body (send none, or {{}}), got "
            f"{_JSON_KINDS.get(type(parsed), 'a JSON value')}",
        )

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        permissions = _permissions(self.dependant)
        takes = query_parameters(self.dependant) if self.path.startswith("/v1/") else None
        named = self._named()

        async def route(request: Request) -> Response:
            if takes is not None and request.scope["query_string"]:
                refusal = query_refusal(request.query_params, takes, named)
                if refusal is not None:
                    # the caller first, as for a body's unknown fields: 401 or 403 before
                    # 400 (a GET route checks the token in its dependency, not run yet)
                    if permissions:
                        authenticate(request, *permissions)
                    raise ApiError(400, "invalid_request", refusal)
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                if permissions:  # none: the route is public (checked when built)
                    authenticate(request, *permissions)
                body = await request.body()  # FastAPI reads Starlette's cache of it
                if body:
                    # a route that takes no body holds one it is sent to the same rules
                    # (it read any body and ignored it)
                    check_json_type(request.headers.get("content-type"))
                    parsed = await parse_json_async(body)
                    if self.body_field is None:
                        self._check_no_fields(parsed)
                    else:
                        # Starlette's Request.json() returns this cache; FastAPI reads it.
                        request._json = parsed
            return await handler(request)

        return route
