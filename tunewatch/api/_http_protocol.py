"""uvicorn's httptools protocol, with a bound on each request's head and JSON answers to
the requests it refuses before any route sees them.

uvicorn's own httptools protocol bounds neither the URL nor the headers, and httptools
gathers a header's value across reads until the header ends: a client without any token
made the daemon hold 400 MiB of one header (its RSS grew by 399 MB) before it was
answered 401. h11 stops at 16 KiB but is slower, and the scoring path is measured on
httptools. Here a head — the request line and the headers — past ``MAX_HEAD_BYTES`` is
answered 431 ``headers_too_large`` as soon as it passes the limit, a request
httptools cannot parse a 400 ``bad_http_request`` (uvicorn's answer was text/plain), and
one whose ``Transfer-Encoding`` names a coding besides ``chunked`` (``gzip, chunked``:
de-chunked, its body was read as if nothing else coded it) a 501
``unsupported_transfer_coding``: each ``{"error", "code"}`` JSON with ``Connection:
close``, and the connection closed.

A chunked body's trailer was bounded by nothing: httptools gathers a trailer field's
value the same way. A client without any token, answered 401 at once, streamed 127 MiB of
one value in 20 s (the daemon's RSS grew by 207 MB; copying the value anew on each read,
its event loop answered others up to 1.2 s late). Now a body's bytes between its data —
the trailer, the chunks' size lines and extensions — past ``MAX_HEAD_BYTES`` are answered
431 the same way, or, the request answered already, close the connection. Nor are a
trailer's fields headers (RFC 9110 §6.5.1): uvicorn added them to the request's headers,
so a tokenless chunked request whose trailer held ``Authorization`` was served when the
trailer arrived in the head's read (its route reads the headers once the read is parsed),
and a ``Content-Encoding`` there decided how its body was read. They are counted against
the bound and dropped.

An HTTP/1.1 request without ``Host``, and any with two ``Host`` lines or one that is not
``uri-host[:port]``, is answered 400 ``bad_http_request`` (RFC 9112 §3.2; all were served).

Nor does uvicorn bound the time a request takes to arrive: a client trickling its head or
its body a byte every few seconds held its connection (and, on the inference route, up to
``server.max_body_bytes`` of buffer) for as long as it liked. Here a request — its head
and its body — must arrive whole within ``read_timeout_s`` of its first byte (the first
request's, of the connection's opening), or it is answered 408 ``request_timeout`` the
same way. A request read whole, or already answered, is not timed however long it runs;
an idle kept-alive connection is uvicorn's ``timeout_keep_alive``'s business.

Each request is framed by its Content-Length or its chunks and answered in turn. One
asking to upgrade the connection (``Upgrade: h2c`` from ``curl --http2``, a WebSocket
handshake) is answered as any other, its body read as a body (see ``_http_upgrade``):
tunewatch serves neither. A refusal waits for the answers to the requests pipelined
before it. An ``Expect: 100-continue`` request answered before its body was invited is
answered with ``Connection: close`` (its body would be read from the next request), and
from HTTP/1.0, which gets no ``100 Continue``, the expectation is ignored (see
``_http_expect``). A client that goes away with requests pipelined is no error: the one
running when it left sends its answer nowhere, as the newest would.

A connection closed with a request still arriving — answered before its body came, on a
connection to be closed (``Connection: close``), or refused within its head — is closed
lingering (see ``_http_linger``): half-closed, the rest of the request read and dropped
until it ends, the client closes or its read timeout is up, so that a reset does not
destroy the answer before the client reads it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from typing import Final, Literal

import httptools
from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from tunewatch.api._http_expect import closing_if_answered_uninvited, expects_100_continue
from tunewatch.api._http_linger import LingeringTransport
from tunewatch.api._http_refusals import (
    Refusal,
    head_too_large,
    read_timeout,
    transfer_coding,
    unparsable,
    unparsable_reason,
    unsupported_transfer_coding,
)
from tunewatch.api._http_upgrade import ParserPastUpgrade

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES: Final = 64 * 1024
"""The most bytes a request line and its headers may take, each header counted as
``name: value`` and its line end: room for large cookies and JWTs (nginx's default is
32 KiB, Node's 16 KiB). A chunked body's trailer, and what its chunks' size lines take
between their data, are held to it too."""

READ_TIMEOUT_S: Final = 30.0
"""How long a request may take to arrive unless the server's config says otherwise
(``server.request_read_timeout_s``)."""


_EARLY_S: Final = 0.001
"""How early a due read timer may run and still time out what it times: the event loop
runs a timer up to its clock's resolution early."""


class _Stop(Exception):
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

    A body's bytes between its data are counted the same way: a trailer that ends by its
    fields, and the reads since the body's last data (or its head's end) that held none.
    Size lines between which data comes, however many, are never counted.

    A request not read whole within :attr:`read_timeout_s` of its first byte is answered
    408 (see the module's doc). The time the server itself holds the rest back is not
    held against the client: while reading is paused (a pipelined request waiting its
    turn, a body the route has not asked for yet) or ``100 Continue`` is not yet sent, the
    timer starts again, and an invited body has a full period from its first byte.
    """

    read_timeout_s: float = READ_TIMEOUT_S
    _read_bytes = 0  # the read being parsed
    _in_head = False  # between a request's first byte and the end of its headers
    _head_first_read_bytes = 0  # the read holding the current head's start
    _head_span_bytes = 0  # every read holding part of the current head
    _stopped_at: Literal["head", "trailer", "coding", "host"] | None = None  # a refusal
    _coding = ""  # the transfer coding a callback stopped at
    _host_problem = ""  # what is wrong with the Host of the head a callback stopped at
    _in_body = False  # between the end of a request's headers and its last byte
    _body_first_read_bytes = 0  # the read holding the body's last data (or its head's end)
    _framing_span_bytes = 0  # every read since, none holding data: a trailer, a chunk line
    _trailer_field_bytes = 0  # the trailer's fields read so far, as _trailer_bytes counts
    _in_request = False  # between a request's first byte and its last
    _read_deadline: float | None = None  # when what is being read must have arrived
    _read_timer: asyncio.TimerHandle | None = None  # due at or before _read_deadline
    _awaiting_invited_body = False  # an Expect: 100-continue request, none of its body yet
    _request_cycle: RequestResponseCycle | None = None  # the one being read, past its head
    _running_cycle: RequestResponseCycle | None = None  # the one whose app was started last
    _past_upgrade: ParserPastUpgrade | None = None  # reads on where httptools stops
    _refusing = False  # a request was refused: nothing more of the connection is read
    _refusal: bytes | None = None  # its answer, once the requests before it are answered
    _refused_deadline: float | None = None  # the refused request's read deadline, if any
    _linger: LingeringTransport  # the transport as the cycles see it; lingers at their close

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._linger = LingeringTransport(transport, wanted=self._answered_while_arriving)
        self._start_read_timer()  # a connection that never sends a request is closed

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_read_timer()
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        running = self._running_cycle
        if running is not None and not running.response_complete:
            # uvicorn tells only the newest request: with requests pipelined, the one
            # running wrote to the closed transport (uvloop raises), logged as an
            # "Exception in ASGI application". The requests queued after it never run.
            running.disconnected = True
            running.message_event.set()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._linger.lingering and not self._linger.dropping(len(data)):
            return
        if self._refusing:  # answered: dropped
            return
        self._unset_keepalive_if_required()
        self._read_bytes = len(data)
        if self._in_head:
            self._head_span_bytes += self._read_bytes
        elif self._in_body:
            self._framing_span_bytes += self._read_bytes
        while True:
            try:
                self.parser.feed_data(data)
                break
            except httptools.HttpParserUpgrade as exc:
                # past an upgrade request's head: a parser that frames its body reads on
                assert self._past_upgrade is not None, "set with the head"
                self.parser = self._past_upgrade.parser
                self._past_upgrade = None
                data = data[exc.args[0] :]
            except httptools.HttpParserError as exc:
                if self._stopped_at == "head":
                    self._refuse_head()
                elif self._stopped_at == "trailer":
                    self._refuse_trailer()
                elif self._stopped_at == "coding":
                    self._refuse_coding()
                elif self._stopped_at == "host":
                    self._refuse_host()
                elif self._linger.lingering:  # the answered request ended, or cannot be framed
                    self.transport.close()
                else:
                    self._refuse_unparsable(exc)
                return
        if self._in_head and self._head_span_bytes - self._head_first_read_bytes > MAX_HEAD_BYTES:
            self._refuse_head()
        elif (
            self._in_body
            and self._framing_span_bytes - self._body_first_read_bytes > MAX_HEAD_BYTES
        ):
            self._refuse_trailer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = self._in_request = True
        self._head_first_read_bytes = self._head_span_bytes = self._read_bytes
        if self._read_deadline is None:  # the first request's runs from the connection's start
            self._start_read_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:
            super().on_header(name, value)
        else:  # a chunked body's trailer: counted, never one of the request's headers
            self._trailer_field_bytes += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_span_bytes > MAX_HEAD_BYTES and self._head_bytes() > MAX_HEAD_BYTES:
            self._stopped_at = "head"
            raise _Stop  # httptools stops here; data_received answers
        problem = host_problem(self.headers, self.parser.get_http_version())
        if problem is not None:
            self._stopped_at, self._host_problem = "host", problem
            raise _Stop
        coding = unsupported_transfer_coding(self.headers)
        if coding is not None:
            self._stopped_at, self._coding = "coding", coding
            raise _Stop
        self.expect_100_continue = expects_100_continue(self.headers, self.parser)
        if self.parser.should_upgrade():
            # httptools would skip its body: raises HttpParserError if it frames none
            keep_alive = self.parser.get_http_version() != "1.0"
            keep_alive = keep_alive and self.parser.should_keep_alive()
            self._past_upgrade = ParserPastUpgrade(self, self.headers, keep_alive=keep_alive)
        self._awaiting_invited_body = self.expect_100_continue
        super().on_headers_complete()
        self._request_cycle = self.cycle
        self._in_body = True
        self._body_first_read_bytes = self._framing_span_bytes = self._read_bytes
        self._trailer_field_bytes = 0

    def on_body(self, body: bytes) -> None:
        if self._awaiting_invited_body:  # its time runs from its first byte
            self._awaiting_invited_body = False
            self._start_read_timer()
        self._body_first_read_bytes = self._framing_span_bytes = self._read_bytes
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._past_upgrade is not None and self._past_upgrade.body_pending:
            return  # httptools skipped an upgrade request's body: the next parser reads it
        if self._framing_span_bytes > MAX_HEAD_BYTES and self._trailer_bytes() > MAX_HEAD_BYTES:
            self._stopped_at = "trailer"
            raise _Stop
        if self._linger.lingering:  # the rest of an answered request read: nothing after it
            self.transport.close()
            raise _Stop
        self._in_request = self._in_body = self._awaiting_invited_body = False
        self._request_cycle = None
        self._stop_read_timer()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        refusal, last = self._refusal, not self.pipeline
        super().on_response_complete()
        if refusal is not None and last:  # the refused request's turn
            self._refusal = None
            self._unset_keepalive_if_required()
            self._send_refusal(refusal)

    def _should_upgrade(self) -> bool:
        """Never: tunewatch serves neither WebSocket nor h2c. A request asking to
        upgrade is answered as any other (RFC 9110 §7.8), its body framed by
        :class:`ParserPastUpgrade`; a WebSocket one handed the connection, unanswered
        and untimed, to uvicorn's websockets protocol."""
        return False

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        if cycle.waiting_for_100_continue:
            app = closing_if_answered_uninvited(cycle, app)
        cycle.transport = self._linger
        self._running_cycle = cycle
        super()._start_asgi_task(cycle, app)

    def _start_read_timer(self) -> None:
        """Time what is read from now. The deadline moves; a timer is made only when none
        is pending, and one that comes due before the deadline moves itself on: under
        keep-alive a connection holds one timer, where one made and cancelled per request
        cost ~1.7 µs of the event loop's each."""
        self._read_until(self.loop.time() + self.read_timeout_s)

    def _read_until(self, deadline: float) -> None:
        self._read_deadline = deadline
        if self._read_timer is None:
            self._read_timer = self.loop.call_at(deadline, self._read_timer_due)

    def _stop_read_timer(self) -> None:
        self._read_deadline = None  # a pending timer finds nothing to time

    def _read_timer_due(self) -> None:
        self._read_timer = None
        deadline = self._read_deadline
        if deadline is None:
            return
        if self.loop.time() < deadline - _EARLY_S:  # the deadline moved on since
            self._read_timer = self.loop.call_at(deadline, self._read_timer_due)
            return
        self._read_deadline = None
        self._read_timed_out()

    def _read_timed_out(self) -> None:
        if self.transport.is_closing():
            return
        if self._linger.lingering:  # answered: the rest of the request had until now
            self.transport.close()
            return
        if not self._in_request:  # nothing of a request arrived: nothing to answer
            self.transport.close()
            return
        # the request being read, once its head is (before, the previous request's)
        cycle = None if self._in_head else self.cycle
        if cycle is not None and cycle.response_started:
            # answered already (a refusal that did not need the body): the rest of the
            # body was only being read to be dropped
            self.transport.close()
            return
        if (
            self.flow.read_paused
            or (cycle is not None and cycle.waiting_for_100_continue)
            or (cycle is None and self.cycle is not None and not self.cycle.response_complete)
        ):
            # the server holds the rest back, not the client (a pipelined head waits for
            # the answer before it)
            self._start_read_timer()
            return
        if self._awaiting_invited_body:
            # invited during the last period and nothing sent yet: one more
            self._awaiting_invited_body = False
            self._start_read_timer()
            return
        part = "head" if cycle is None else "body"
        logger.warning(
            "request %s from %s not received within %g s: answered 408 request_timeout",
            part,
            self._peer(),
            self.read_timeout_s,
        )
        self._refuse(read_timeout(part, self.read_timeout_s))

    def _head_bytes(self) -> int:
        """The URL and the headers, each header as ``name: value`` and its line end."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _trailer_bytes(self) -> int:
        """A chunked body's trailer, counted as the head's fields are."""
        return self._trailer_field_bytes

    def _refuse_head(self) -> None:
        logger.warning(
            "request head from %s past %d bytes: answered 431 headers_too_large",
            self._peer(),
            MAX_HEAD_BYTES,
        )
        self._refuse(head_too_large(MAX_HEAD_BYTES))

    def _refuse_trailer(self) -> None:
        own = self._request_cycle
        if own is not None and own.response_started:
            outcome = "the connection closed (the request was answered already)"
        else:
            outcome = "answered 431 headers_too_large"
        logger.warning(
            "request body from %s past %d bytes between its data (its trailer, chunk size "
            "lines): %s",
            self._peer(),
            MAX_HEAD_BYTES,
            outcome,
        )
        self._refuse(_trailer_too_large())

    def _refuse_coding(self) -> None:
        logger.warning(
            "request from %s with Transfer-Encoding %r: answered 501", self._peer(), self._coding
        )
        self._refuse(transfer_coding(self._coding))

    def _refuse_host(self) -> None:
        logger.warning("request from %s with %s: answered 400", self._peer(), self._host_problem)
        self._refuse(unparsable(f": {self._host_problem}"))

    def _refuse_unparsable(self, exc: httptools.HttpParserError) -> None:
        reason = unparsable_reason(exc)
        logger.warning(
            "request from %s is not valid HTTP/1.1%s: answered 400", self._peer(), reason
        )
        self._refuse(unparsable(reason))

    def _refuse(self, refusal: Refusal) -> None:
        """Answer ``refusal`` and close, reading no more of the connection — once the
        requests before the refused one are answered: a request pipelined behind a valid
        one was answered first, and the valid one, scored and recorded, never was."""
        if self._refusing:
            return
        self._refusing = True
        self._refused_deadline = self._read_deadline if self._in_request else None
        self._stop_read_timer()
        response = refusal.response(self.server_state.default_headers)
        own = self._request_cycle  # the refused request's, if its head was read
        if own is None:  # refused within its head: after the request before it, if any
            earlier = self.cycle is not None and not self.cycle.response_complete
        elif self.pipeline and self.pipeline[0][0] is own:  # waiting its turn: never run
            self.pipeline.popleft()
            earlier = True
        elif own.response_started:
            # answered already (a refusal that did not need the body): the rest of the
            # body was only being read to be dropped
            self.transport.close()
            return
        else:  # its route, if it waits for the body, sees the client gone
            own.disconnected = True
            own.message_event.set()
            earlier = False
        if earlier:
            self._refusal = response
            self.flow.pause_reading()
        else:
            self._send_refusal(response)

    def _send_refusal(self, response: bytes) -> None:
        if self._linger.is_closing():  # not when the request before asked to close
            return
        self.transport.write(response)
        deadline = self._refused_deadline
        if deadline is None or deadline <= self.loop.time():
            self.transport.close()
            return
        # the refused request may still be arriving, until its read deadline: dropped
        self._linger.linger()
        self.flow.resume_reading()
        self._read_until(deadline)

    def _answered_while_arriving(self) -> bool:
        """Whether a cycle closing the connection leaves a request arriving: its own,
        answered before its body was read whole (none can follow it yet)."""
        cycle = self._request_cycle
        return cycle is not None and cycle.response_complete

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "an unknown client"


_REG_NAME: Final = re.compile(rb"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*")
"""RFC 3986's reg-name (an IPv4 address is one too): unreserved, sub-delims and
percent-encoded octets."""

_HOST: Final = re.compile(rb"(?P<host>\[(?P<literal>[^\]]*)\]|[^:\[\]]*)(?::[0-9]*)?")
"""``uri-host [ ":" port ]`` (RFC 9112 §3.2), the host itself checked apart."""

_IPVFUTURE: Final = re.compile(rb"[vV][0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+")


def host_problem(headers: list[tuple[bytes, bytes]], http_version: str) -> str | None:
    """What is wrong with a request's ``Host`` (``headers``' names in lower case), or
    ``None``: from HTTP/1.1 on it must have one, and any request at most one, valid —
    ``uri-host[:port]``, the host a reg-name, an IPv4 address or a bracketed IPv6 (or
    IPvFuture) literal, the port digits; empty is valid (RFC 9112 §3.2, RFC 3986 §3.2.2).
    A value's surrounding spaces and tabs are not part of it (RFC 9110 §5.5)."""
    values = [value for name, value in headers if name == b"host"]
    if not values:
        return None if http_version in ("0.9", "1.0") else "no Host header"
    if len(values) > 1:
        return f"{len(values)} Host headers"
    value = values[0].strip(b" \t")
    match = _HOST.fullmatch(value)
    if match is not None:
        literal = match["literal"]
        if literal is None:
            valid = _REG_NAME.fullmatch(match["host"]) is not None
        else:
            valid = _ip_literal(literal)
        if valid:
            return None
    shown = value[:100].decode("latin-1")
    return f"an invalid Host {shown!r} (not host[:port])"


def _ip_literal(literal: bytes) -> bool:
    """Whether ``literal``, the inside of ``[...]``, is an IPv6 address or IPvFuture
    (no zone: ``ipaddress`` takes one after a ``%``, RFC 3986 does not)."""
    if _IPVFUTURE.fullmatch(literal) is not None:
        return True
    if b"%" in literal:
        return False
    try:
        ipaddress.IPv6Address(literal.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return False
    return True


def _trailer_too_large() -> Refusal:
    return Refusal(
        431,
        "headers_too_large",
        f"a chunked body's trailer, and its chunks' size lines between their data, must be "
        f"at most {MAX_HEAD_BYTES} bytes (each trailer field counted as 'name: value' and "
        "its line end)",
    )


def bounded_protocol(*, read_timeout_s: float) -> type[BoundedHttpToolsProtocol]:
    """:class:`BoundedHttpToolsProtocol` with its read timeout set: uvicorn takes the
    protocol as a class and gives it no settings of ours."""
    timeout_s = read_timeout_s

    class Configured(BoundedHttpToolsProtocol):
        read_timeout_s = timeout_s

    return Configured
