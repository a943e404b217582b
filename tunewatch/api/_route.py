"""The route class of the ``/v1`` management API: who is calling is known before the body
is read, and a JSON body is read by the same strict parser as the scoring routes.

FastAPI reads and parses a route's body before it runs the route's dependencies (where
the permission check lives), with a parser that accepts ``NaN`` and duplicate keys. So
without this an anonymous client could make the daemon read and parse bodies up to the
artefact limit, and ``{"reason": NaN}`` would pass. Here a request with a body must carry
a valid bearer token (any role; the route's own dependency still checks the permission),
and a ``Content-Type: application/json`` body is parsed strictly and handed to FastAPI
already decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from email.message import Message
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from tunewatch.api._body import parse_json
from tunewatch.api._context import context


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class ApiRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                context(request).auth.identify(request.headers.get("authorization"))
                if _is_json(request.headers.get("content-type")):
                    body = await request.body()
                    if body:
                        # Starlette's Request.json() returns this cache; FastAPI reads it.
                        request._json = parse_json(body)
            return await handler(request)

        return route
