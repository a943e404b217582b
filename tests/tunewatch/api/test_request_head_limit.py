"""A request's head — its request line and headers — is bounded, and every answer of the
HTTP layer itself is JSON.

Under uvicorn's httptools protocol (what ``tunewatch serve`` ran) nothing bounded the URL
or the headers: a client without any token sent 400 MiB as one header and the daemon
buffered all of it (its RSS grew by 399 MB) before answering 401. Now a head past
``MAX_HEAD_BYTES`` is answered 431 ``headers_too_large`` as soon as it passes the limit —
before it ends — and the connection closed; a request httptools cannot parse is a JSON
400 ``bad_http_request`` (uvicorn answered it in text/plain)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.tunewatch.api.raw_http import Conn
from tests.tunewatch.conftest import Running
from tunewatch.api._http_protocol import MAX_HEAD_BYTES

KIB = 1024


@pytest.fixture
def conn(running: Running) -> Any:
    c = Conn(running.server.port)
    yield c
    c.close()


def get(path: str, *headers: tuple[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: tunewatch", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def bearer(running: Running, role: str) -> tuple[str, str]:
    return ("Authorization", running.auth(role)["Authorization"])


def assert_head_refused(conn: Conn) -> None:
    answer = conn.answer()
    assert answer.status == 431, answer
    assert answer.json()["code"] == "headers_too_large"
    assert str(MAX_HEAD_BYTES) in answer.json()["error"]
    assert answer.headers["connection"] == "close"
    assert conn.closed_by_server()


def test_a_header_streamed_past_the_limit_is_answered_431_before_the_head_ends(
    conn: Conn,
) -> None:
    """1 MiB of one header, sent 16 KiB at a time and never ended: the answer comes from
    the limit, not from the end of the head (nor the end of the stream, which closed the
    connection unanswered)."""
    conn.send(b"GET /v1/models HTTP/1.1\r\nHost: tunewatch\r\nX-Big: ", *[b"a" * 16 * KIB] * 64)
    conn.end()
    assert_head_refused(conn)


def test_a_url_past_the_limit_is_answered_431(conn: Conn) -> None:
    conn.send(b"GET /v1/models?q=", *[b"a" * 16 * KIB] * 64)
    conn.end()
    assert_head_refused(conn)


def test_many_small_headers_past_the_limit_are_answered_431(running: Running, conn: Conn) -> None:
    """The bound is on the whole head, not on one header: 2,000 headers of 50 bytes."""
    many = [(f"X-Tag-{i}", "b" * 40) for i in range(2000)]
    conn.send(get("/v1/models", bearer(running, "viewer"), *many))
    assert_head_refused(conn)


@pytest.mark.parametrize(
    "cookie_bytes",
    [
        pytest.param(8 * KIB, id="8KiB-cookie"),
        pytest.param(MAX_HEAD_BYTES - 2 * KIB, id="near-limit"),
    ],
)
def test_a_large_cookie_under_the_limit_is_served(
    running: Running, conn: Conn, cookie_bytes: int
) -> None:
    cookie = ("Cookie", "tracking=" + "c" * cookie_bytes)
    conn.send(get("/v1/models", cookie))
    unauthenticated = conn.answer()
    assert (unauthenticated.status, unauthenticated.json()["code"]) == (401, "unauthenticated")
    conn.send(get("/v1/models", cookie, bearer(running, "viewer")))
    assert conn.answer().status == 200


def test_the_limit_holds_per_request_on_a_kept_alive_connection(
    running: Running, conn: Conn
) -> None:
    """Three requests of 40 KiB heads on one connection, the last two pipelined in one
    write: 120 KiB of heads in all, each under the limit."""
    big = ("X-Trace", "t" * 40 * KIB)
    viewer = bearer(running, "viewer")
    conn.send(get("/v1/models", big, viewer))
    assert conn.answer().status == 200
    conn.send(get("/v1/models", big, viewer) + get("/v1/models", big, viewer))
    assert [conn.answer().status, conn.answer().status] == [200, 200]


def test_a_body_past_the_limit_is_not_counted_as_head(running: Running, conn: Conn) -> None:
    """A 200 KiB body sent with its head in one write reaches the body limit (64 KiB in
    this daemon's config), not the head's."""
    body = b"{" + b" " * 200 * KIB + b"}"
    head = (
        "POST /v2/models/credit/infer HTTP/1.1\r\nHost: tunewatch\r\n"
        f"Authorization: {running.auth('scorer')['Authorization']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    conn.send(head.encode() + body)
    answer = conn.answer()
    assert (answer.status, answer.json()["code"]) == (413, "body_too_large")


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(
            b"POST /v1/models HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
            b"Content-Length: 3\r\n\r\n{}",
            id="duplicate-content-length",
        ),
        pytest.param(
            b"POST /v1/models HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            id="content-length-with-chunked",
        ),
        pytest.param(
            b"POST /v1/models HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\n{}\r\n0\r\n\r\n",
            id="bad-chunk-size",
        ),
    ],
)
def test_a_request_httptools_cannot_parse_is_a_json_400(conn: Conn, request_bytes: bytes) -> None:
    conn.send(request_bytes)
    answer = conn.answer()
    assert answer.status == 400, answer
    assert answer.json()["code"] == "bad_http_request"
    assert answer.headers["connection"] == "close"
    assert conn.closed_by_server()
