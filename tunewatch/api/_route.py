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
415 naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from email.message import Message
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from tunewatch.api._body import parse_json_async
from tunewatch.api._context import authenticate, context
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


def _permissions(dependant: Dependant) -> tuple[str, ...]:
    """The permissions the route's ``require(...)`` dependencies ask for (any one will do)."""
    found: list[str] = []
    for dependency in dependant.dependencies:
        found.extend(getattr(dependency.call, "permissions", ()))
        found.extend(_permissions(dependency))
    return tuple(dict.fromkeys(found))


class ApiRoute(APIRoute):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # a body without a Content-Type is JSON too (checked and parsed below)
        super().__init__(*args, **{**kwargs, "strict_content_type": False})

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        permissions = _permissions(self.dependant)

        async def route(request: Request) -> Response:
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                if permissions:
                    authenticate(request, *permissions)
                else:
                    context(request).auth.identify(request.headers.get("authorization"))
                body = await request.body()  # FastAPI reads Starlette's cache of it
                if body and self.body_field is not None:
                    check_json_type(request.headers.get("content-type"))
                    # Starlette's Request.json() returns this cache; FastAPI reads it.
                    request._json = await parse_json_async(body)
            return await handler(request)

        return route
