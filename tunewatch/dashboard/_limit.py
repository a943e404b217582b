"""How many dashboard reads run at once, and the headers every JSON answer carries.

Dashboard reads and page renders run in the daemon's own process, in the worker threads
that token look-ups, ``/readyz`` and the management API use too, beside scoring. One
read can be large (up to 100,000 windows aggregated into 5,000 points): one viewer
loading 60 at once held every worker thread, inference took up to 12 s and ``/readyz``
16 s. So at most :data:`MAX_READS_IN_PROGRESS` dashboard reads and page renders run at
once in a process; another is answered at once, without taking a worker thread, with 429
``dashboard_busy`` and ``Retry-After`` (a page with a small HTML error page). Only a
caller who may read takes a slot: it is known first (:func:`~._auth.identify`), and a
request without valid credentials is answered as the route answers one (401 or 403, a
page the sign-in redirect) without a slot. The slot was taken before the caller was known
(a session look-up is a database read too, in a worker thread), so anyone who could reach
the port held them: with 8 loops sending made-up session cookies, a signed-in viewer's
reads were answered 429 21 times in 34. Session look-ups are bounded on their own instead
(:data:`~._auth.MAX_SESSION_LOOKUPS` at once, the next waiting without a thread). The
slot is freed once the answer is built, before it is sent, whether it is a 200 or an
error (:class:`tunewatch.api._slots.Slots`). The slots are the dashboard's own: the ``/v1``
evaluation listings have theirs (:mod:`tunewatch.api._listing_limit`).

Every ``/v1/dashboard`` answer (errors too) is ``Cache-Control: no-store`` and
``Vary: Cookie``: it holds model, audit and approval data read by the session cookie,
which no browser or proxy cache should keep or hand to another user. The pages set
their own headers (:func:`tunewatch.dashboard._html.respond`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from tunewatch.api._errors import ApiError
from tunewatch.api._route import query_parameters, query_refusal
from tunewatch.api._slots import Slots, busy_response

from ._auth import identify, principal
from ._html import error_page

# Dashboard reads and page renders in progress at once, per process: two keep a viewer's
# page (one page render, or a script's two reads) going while leaving the worker threads
# (anyio's default 40) to scoring, token look-ups and the probes.
MAX_READS_IN_PROGRESS = 2
# Seconds a caller answered 429 is asked to wait: a read takes well under that typically.
RETRY_AFTER_S = 1
BUSY_CODE = "dashboard_busy"
BUSY_MESSAGE = (
    f"the dashboard is busy: at most {MAX_READS_IN_PROGRESS} dashboard reads run at once "
    f"in this daemon; retry in {RETRY_AFTER_S} s"
)

_slots = Slots(MAX_READS_IN_PROGRESS)


class _LimitedRoute(APIRoute, ABC):
    """A dashboard route whose caller is known before it runs: one refused is answered by
    the route without a slot; one who may read runs only while it holds one of the
    process's :data:`MAX_READS_IN_PROGRESS` slots, and without one is answered
    :meth:`busy`."""

    @abstractmethod
    def busy(self) -> Response:
        """The answer when every slot is held."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        # the read and building the answer (JSON encoded, a page rendered)
        limited = _slots.limit(handler, self.busy)

        async def route(request: Request) -> Response:
            if await identify(request, "read") is None:
                # refused: the route answers as it always has (401/403, the sign-in page),
                # from the refusal kept on the request, with no slot and no look-up
                return await handler(request)
            return await limited(request)

        return route


class ReadRoute(_LimitedRoute):
    """A ``/v1/dashboard`` route: limited, every answer it sends (an error too) is
    ``Cache-Control: no-store`` and ``Vary: Cookie``, and a query parameter it does not
    take, or one repeated where it takes one value, is 400 ``invalid_request`` once the
    caller is known (401/403 first), as on the other ``/v1`` routes
    (:class:`tunewatch.api._route.ApiRoute`): ``?max_point=50`` read 400 points."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        takes = query_parameters(self.dependant)
        named = f"{'/'.join(sorted(self.methods or ()))} {self.path}"

        async def route(request: Request) -> Response:
            if request.scope["query_string"]:
                refusal = query_refusal(request.query_params, takes, named)
                if refusal is not None:
                    await identify(request, "read")
                    principal(request, "read")  # the refusal kept, if it was refused
                    raise ApiError(400, "invalid_request", refusal)
            return await handler(request)

        return route

    def busy(self) -> Response:
        return busy_response(BUSY_CODE, BUSY_MESSAGE, RETRY_AFTER_S)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        # here, not in the handler: our error handlers answer inside the route's app
        async def private(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Cache-Control"] = "no-store"
                headers.add_vary_header("Cookie")
            await send(message)

        await super().handle(scope, receive, private)


class PageRoute(_LimitedRoute):
    """A ``/dashboard`` page: limited, busy answered with an HTML error page."""

    def busy(self) -> Response:
        response = error_page(429, BUSY_MESSAGE, None)
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response
