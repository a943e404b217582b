"""uvicorn's httptools protocol, with a bound on each request's head and JSON answers to
the requests it refuses before any route sees them.

uvicorn's own httptools protocol bounds neither the URL nor the headers, and httptools
gathers a header's value across reads until the header ends: a client without any token
made the daemon hold 400 MiB of one header (its RSS grew by 399 MB) before it was
answered 401. h11 stops at 16 KiB but is slower, and the scoring path is measured on
httptools. Here a head — the request line and the headers — past ``MAX_HEAD_BYTES`` is
answered 431 ``headers_too_large`` as soon as it passes the limit, and a request
httptools cannot parse a 400 ``bad_http_request`` (uvicorn's answer was text/plain):
each ``{"error", "code"}`` JSON with ``Connection: close``, and the connection closed.
"""

from __future__ import annotations

import json
import logging
from typing import Final

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES: Final = 64 * 1024
"""The most bytes a request line and its headers may take, each header counted as
``name: value`` and its line end: room for large cookies and JWTs (nginx's default is
32 KiB, Node's 16 KiB)."""


class _HeadTooLarge(Exception):
    """Raised in a parser callback to stop httptools within a read."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` refusing a head past :data:`MAX_HEAD_BYTES`.

    A head that ends is measured exactly (its URL and headers), but only when the reads
    it arrived in could hold more than the limit, so a request of one small read costs
    no more than under uvicorn's own protocol. A head still arriving is refused once the
    reads wholly within it pass the limit (httptools holds an unfinished header, and
    uvicorn the URL, until they end): the read holding its start may also hold an earlier
    pipelined request, so it is not counted, and such a head is refused at most one read
    (asyncio's 256 KiB) past the limit. The counts restart with each request.
    """

    _read_bytes = 0  # the read being parsed
    _in_head = False  # between a request's first byte and the end of its headers
    _head_first_read_bytes = 0  # the read holding the current head's start
    _head_span_bytes = 0  # every read holding part of the current head
    _head_too_large = False

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        self._read_bytes = len(data)
        if self._in_head:
            self._head_span_bytes += self._read_bytes
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if self._head_too_large:
                self._refuse_head()
            else:
                self._refuse_unparsable(exc)
            return
        if self._in_head and self._head_span_bytes - self._head_first_read_bytes > MAX_HEAD_BYTES:
            self._refuse_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_first_read_bytes = self._head_span_bytes = self._read_bytes

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_span_bytes > MAX_HEAD_BYTES and self._head_bytes() > MAX_HEAD_BYTES:
            self._head_too_large = True
            raise _HeadTooLarge  # httptools stops here; data_received answers
        super().on_headers_complete()

    def _head_bytes(self) -> int:
        """The URL and the headers, each header as ``name: value`` and its line end."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _refuse_head(self) -> None:
        logger.warning(
            "request head from %s past %d bytes: answered 431 headers_too_large",
            self._peer(),
            MAX_HEAD_BYTES,
        )
        self._refuse(
            431,
            "headers_too_large",
            f"the request line and headers must be at most {MAX_HEAD_BYTES} bytes "
            "(each header counted as 'name: value' and its line end); "
            "send large values in the body",
        )

    def _refuse_unparsable(self, exc: httptools.HttpParserError) -> None:
        # a callback's own failure (uvicorn's decoding of the path) says only
        # "User callback error"
        reason = "" if isinstance(exc, httptools.HttpParserCallbackError) else f": {exc}"
        logger.warning(
            "request from %s is not valid HTTP/1.1%s: answered 400", self._peer(), reason
        )
        self._refuse(400, "bad_http_request", f"the request is not valid HTTP/1.1{reason}")

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``{"error", "code"}`` with ``Connection: close`` and close, reading no
        more of the request."""
        body = json.dumps({"error": message, "code": code}).encode()
        head = [STATUS_LINE[status]]
        head += [
            name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
        ]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "an unknown client"
