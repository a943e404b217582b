"""``Expect: 100-continue``: when a request expects it, and what an answer sent before its
body was invited does to the connection.

uvicorn sets the expectation only on the exact bytes ``100-continue`` (in any case), but
httptools keeps the whitespace after a field's value, which RFC 9110 §5.5 excludes from
it: ``Expect: 100-continue`` with a trailing space or tab was no expectation, so an answer
sent before the body left the connection open, and the client's next request was read
as the body it never sent.
"""

from __future__ import annotations

from typing import Any

import httptools
from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, ASGISendEvent
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle


def expects_100_continue(
    headers: list[tuple[bytes, bytes]], parser: httptools.HttpRequestParser
) -> bool:
    """Whether a request of ``headers`` (names in lower case), read by ``parser``, waits
    for ``100 Continue`` before sending its body: an ``Expect`` field of ``100-continue``,
    in any case and whitespace around it, in HTTP/1.1. In HTTP/1.0 the expectation is
    ignored, for it gets no 1xx (RFC 9110 §10.1.1, §15.2)."""
    for name, value in headers:
        if name == b"expect" and value.strip(b" \t").lower() == b"100-continue":
            return parser.get_http_version() != "1.0"
    return False


def closing_if_answered_uninvited(
    cycle: RequestResponseCycle, app: ASGI3Application
) -> ASGI3Application:
    """``app`` answering ``cycle``'s ``Expect: 100-continue`` request, with
    ``Connection: close`` if it answers before inviting the body, the body not all in:
    the client need not send it (RFC 9110 §10.1.1), and its next request on the
    connection was read as that body. So does Go's net/http."""

    async def closing_app(scope: Any, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        async def checked_send(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start" and cycle.waiting_for_100_continue:
                if cycle.more_body:
                    cycle.keep_alive = False
            await send(message)

        await app(scope, receive, checked_send)

    return closing_app
