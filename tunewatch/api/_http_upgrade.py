"""A request asking to upgrade the connection, framed as any other request.

tunewatch serves neither WebSocket nor h2c, and RFC 9110 §7.8 lets a server ignore an
upgrade it does not support — it then reads and answers the request as HTTP/1.1. But
httptools stops framing at a request carrying ``Connection: upgrade`` and ``Upgrade``
(or a CONNECT): it skips the body, whatever the Content-Length or chunks say, calls the
request complete and raises ``HttpParserUpgrade`` at the body's first byte. uvicorn's
protocol then logged "Unsupported upgrade request." and read on: a valid inference from
``curl --http2`` was answered 400 "request body is empty", and a body arriving in a later
read was parsed as the next request (request smuggling).

httptools gives no way to clear the upgrade, so :class:`ParserPastUpgrade` is a
parser that reads on from where it stopped: a new parser fed a head of the request's own
``Content-Length`` and ``Transfer-Encoding`` (so it frames the body, chunks and errors as
it would have) — that head's callbacks kept from the protocol — which then reads the body
and every request after it.
"""

from __future__ import annotations

from typing import Protocol

import httptools

_FRAMING: frozenset[bytes] = frozenset({b"content-length", b"transfer-encoding"})


class HttpCallbacks(Protocol):
    """The parser callbacks of uvicorn's httptools protocol."""

    def on_message_begin(self) -> None: ...
    def on_url(self, url: bytes) -> None: ...
    def on_header(self, name: bytes, value: bytes) -> None: ...
    def on_headers_complete(self) -> None: ...
    def on_body(self, body: bytes) -> None: ...
    def on_message_complete(self) -> None: ...


class ParserPastUpgrade:
    """A parser to read on, with ``protocol``'s callbacks, where httptools stops after the
    head of an upgrade request of ``headers`` (names in lower case): primed with a head
    of their Content-Length and Transfer-Encoding.

    ``body_pending`` says whether the request has a body still to read (else it was
    complete with its head, as httptools has already called it). Raises
    :class:`httptools.HttpParserError` when the headers frame no body httptools would
    read (a Transfer-Encoding not ending in chunked, or with a Content-Length)."""

    def __init__(
        self, protocol: HttpCallbacks, headers: list[tuple[bytes, bytes]], *, keep_alive: bool
    ) -> None:
        self._protocol = protocol
        self.body_pending = True
        self.parser = httptools.HttpRequestParser(self)
        # as uvicorn sets its own: requests pipelined behind one closing the connection
        # are not parsed
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        lines = [b"PUT / HTTP/1.1\r\n"]
        lines += [name + b": " + value + b"\r\n" for name, value in headers if name in _FRAMING]
        if not keep_alive:
            lines.append(b"connection: close\r\n")
        self._priming = True  # the made-up head: nothing of it reaches the protocol
        self.parser.feed_data(b"".join(lines) + b"\r\n")
        self._priming = False

    def on_message_begin(self) -> None:
        if not self._priming:
            self._protocol.on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self._priming:
            self._protocol.on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._priming:
            self._protocol.on_header(name, value)

    def on_headers_complete(self) -> None:
        if not self._priming:
            self._protocol.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._protocol.on_body(body)

    def on_message_complete(self) -> None:
        if self._priming:  # no body: the request was complete with its head
            self.body_pending = False
        else:
            self._protocol.on_message_complete()
