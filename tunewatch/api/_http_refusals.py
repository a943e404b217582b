"""The answers the HTTP layer gives requests no route sees: ``{"error", "code"}`` JSON
with ``Connection: close``, each message naming the rule the request broke."""

from __future__ import annotations

import json
from dataclasses import dataclass

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str

    def response(self, default_headers: list[tuple[bytes, bytes]]) -> bytes:
        """The whole response, ``default_headers`` (uvicorn's server and date) first."""
        body = json.dumps({"error": self.message, "code": self.code}).encode()
        head = [STATUS_LINE[self.status]]
        head += [name + b": " + value + b"\r\n" for name, value in default_headers]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        return b"".join(head) + body


def head_too_large(max_head_bytes: int) -> Refusal:
    return Refusal(
        431,
        "headers_too_large",
        f"the request line and headers must be at most {max_head_bytes} bytes "
        "(each header counted as 'name: value' and its line end); "
        "send large values in the body",
    )


def unparsable_reason(exc: httptools.HttpParserError) -> str:
    """What httptools says is wrong, as ``": reason"``, or ``""``: a callback's own
    failure (uvicorn's decoding of the path) says only "User callback error", but one
    that is itself a parser's error (framing the body of an upgrade request) says why."""
    if isinstance(exc, httptools.HttpParserCallbackError):
        cause = exc.__context__
        return f": {cause}" if isinstance(cause, httptools.HttpParserError) else ""
    return f": {exc}"


def unparsable(reason: str) -> Refusal:
    return Refusal(400, "bad_http_request", f"the request is not valid HTTP/1.1{reason}")


def read_timeout(part: str, timeout_s: float) -> Refusal:
    return Refusal(
        408,
        "request_timeout",
        f"the request's {part} did not arrive within {timeout_s:g} s "
        "(server.request_read_timeout_s)",
    )


def unsupported_transfer_coding(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The first transfer coding of a request's ``Transfer-Encoding`` (``headers``' names
    in lower case) other than ``chunked``, when the codings end in ``chunked`` (which
    frames the body: else httptools refuses the request, 400); ``None`` for none. Such a
    body was de-chunked and read as if nothing else had coded it."""
    codings = [
        coding.strip().lower()
        for name, value in headers
        if name == b"transfer-encoding"
        for coding in value.decode("latin-1").split(",")
    ]
    if not codings or codings[-1] != "chunked":
        return None
    return next((c for c in codings[:-1] if c != "chunked"), None)


def transfer_coding(coding: str) -> Refusal:
    """RFC 9112 §6.1: a transfer coding the server does not understand is answered 501."""
    return Refusal(
        501,
        "unsupported_transfer_coding",
        f"Transfer-Encoding {coding!r} is not supported: send the body chunked or with a "
        "Content-Length (a compressed body with Content-Encoding gzip or deflate)",
    )
