"""A bound on how many heavy reads of one kind run at once in a process.

Heavy reads (the dashboard's, the ``/v1`` evaluation listings) run in the daemon's own
process, in the worker threads that token look-ups, ``/readyz`` and the management API
use too, beside scoring. A :class:`Slots` lets at most ``most`` of one kind run at once;
its :meth:`Slots.limit` wraps a route's handler so that a request finding every slot held
is answered at once (429 and ``Retry-After``: :func:`busy_response`), on the event loop,
without taking or waiting for a worker thread. The slot is freed once the answer is
built, before it is sent, whether it is a 200 or an error. Whoever wraps a handler decides
what runs before the slot is taken: the dashboard knows its caller first, so a request
without valid credentials never holds one (anyone who could reach the port kept signed-in
viewers at 429: ``tunewatch.dashboard._limit``); a ``/v1`` route's token was looked up
by the front before the route, and its check in the slot reads the cache. A write whose
bounded work begins only once its body is in (feedback, large mirror calls) takes its
slot then instead, with :meth:`Slots.run`: a slot taken as the body began to arrive was
held for as long as the client took to send it, and four clients that stopped part way
held every slot until the read timeout closed them. Each kind of request has a pool of
its own: ``tunewatch.dashboard._limit``, :mod:`tunewatch.api._listing_limit`
:mod:`tunewatch.api._feedback_limit` (label writes) and
:mod:`tunewatch.api._mirror_limit` (large mirror calls).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tunewatch.api._errors import error_response

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
Work = Callable[[], Coroutine[Any, Any, Response]]


class Slots:
    """At most ``most`` requests of one kind in progress at once in the process; a slot
    is taken without waiting for one."""

    def __init__(self, most: int) -> None:
        if most < 1:
            raise ValueError(f"`most` must be at least 1, got {most}")
        self.most = most
        self._free = threading.BoundedSemaphore(most)

    def limit(self, handler: Handler, busy: Callable[[], Response]) -> Handler:
        """``handler``, run only while it holds one of the slots; without one the request
        is answered ``busy()`` at once."""

        async def route(request: Request) -> Response:
            # the read and building the answer (and whatever the handler checks first)
            return await self.run(partial(handler, request), busy)

        return route

    async def run(self, work: Work, busy: Callable[[], Response]) -> Response:
        """``work()``, awaited only while it holds one of the slots; without one,
        ``busy()`` at once."""
        if not self._free.acquire(blocking=False):
            return busy()
        try:
            # a sync endpoint's worker thread is waited for even when the request is
            # cancelled, so the slot is freed only once the thread is done
            return await work()
        finally:
            self._free.release()


def busy_response(code: str, message: str, retry_after_s: int) -> JSONResponse:
    """429 ``{"error": message, "code": code}`` with ``Retry-After: retry_after_s``."""
    response = error_response(429, code, message)
    response.headers["Retry-After"] = str(retry_after_s)
    return response


def busy_description(code: str, why: str) -> dict[int | str, dict[str, Any]]:
    """The 429 a limited route documents in ``/openapi.json`` (``responses=``): ``code``
    and ``why`` it is answered."""
    return {
        429: {
            "description": f"`{code}`: {why}; retry after `Retry-After` seconds",
            "headers": {
                "Retry-After": {
                    "description": "seconds to wait before asking again",
                    "schema": {"type": "integer"},
                }
            },
        }
    }
