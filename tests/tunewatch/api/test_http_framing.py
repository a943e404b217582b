"""Every request is framed by its Content-Length or its chunks, and answered in order.

Under `tunewatch serve`, raw sockets showed ten ways the HTTP layer lost that:

- a request carrying ``Upgrade`` (``Upgrade: h2c``, which ``curl --http2`` and Spring's
  RestClient send on http://) was read as having no body: httptools stops framing at an
  upgrade, and uvicorn's protocol only logged "Unsupported upgrade request.". A valid
  inference was answered 400 "request body is empty", and a body sent in a later read was
  parsed as the next request — one holding a scorer's token was executed behind a
  tokenless head (request smuggling). RFC 9110 §7.8: a server may ignore an upgrade it
  does not support, and then frames the request as any other. tunewatch serves no
  WebSocket and no h2c: the request is answered as HTTP/1.1.
- ``Upgrade: websocket`` with a body handed the connection to uvicorn's websockets
  protocol, which held it open without a token, unanswered, for as long as the client
  liked; it is now answered as HTTP/1.1 too, and bounded by the read timeout.
- a request httptools cannot parse (or a head past the limit), pipelined behind a valid
  one, was answered 400 first and the connection closed: the valid request was scored and
  recorded but its answer lost. It is now answered first, the refusal after it.
- an ``Expect: 100-continue`` request refused before ``100 Continue`` (413 by its
  Content-Length, 401 without a token) was answered without ``Connection: close`` while
  its body stayed unread: the client's next request on the connection was read as that
  body. The connection is now closed after such an answer (as Go's net/http does).
- an HTTP/1.0 request with ``Expect: 100-continue`` was sent ``HTTP/1.1 100 Continue``;
  RFC 9110 §10.1.1 and §15.2: the expectation is ignored, no 1xx goes to HTTP/1.0.
- ``Expect: 100-continue`` with a space or a tab after it was no expectation (uvicorn
  compared the whole value; RFC 9110 §5.5 excludes the whitespace from it), so such a
  request refused before its body kept the connection, and the next request was read as
  that body.
- a chunked body's trailer was bounded by nothing: httptools gathers a field's value
  across reads until it ends, and the daemon, answering 401 to a tokenless one at once,
  read on — 127 MiB of one value in 20 s, its RSS up 207 MB, other connections answered
  up to 1.2 s late. The bytes between a body's data (its trailer, its chunks' size lines)
  are now held to the head's limit: 431, or the connection closed if answered already.
- a chunked body's trailer fields were added to the request's headers: sent in the
  head's read, an ``Authorization`` there authenticated a tokenless head, and a
  ``Content-Encoding`` there decided how the body was read (RFC 9110 §6.5.1: trailer fields
  are not merged into the header section). They are now only counted against the limit.
- an HTTP/1.1 request without ``Host``, with two, or with one not ``host[:port]`` was
  served; RFC 9112 §3.2: it is answered 400.
- a client that pipelined requests and went away while one ran had that one's answer
  written to the closed connection: an "Exception in ASGI application" and an "unhandled
  error" traceback in the log, on 7 of 10 such connections (uvicorn told only the newest
  request that its client was gone).

The read timeout here is 1 s; the sockets' own timeouts only bound each wait, so that a
request left unanswered fails the test rather than hanging it.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.tunewatch.api.raw_http import Answer, Conn
from tests.tunewatch.conftest import MODEL, make_daemon
from tests.tunewatch.serve_process import START_S, free_port, serving
from tunewatch._example import ExampleModel
from tunewatch.api._http_protocol import MAX_HEAD_BYTES

KIB = 1024
INFER = f"/v2/models/{MODEL}/infer"
H2C = (
    "Connection: Upgrade, HTTP2-Settings",
    "Upgrade: h2c",
    "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
)
WEBSOCKET = (
    "Connection: Upgrade",
    "Upgrade: websocket",
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
)
BODY = json.dumps(
    {"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": [0.1] * 8}]}
).encode()


@dataclass(frozen=True)
class Served:
    port: int
    scorer: str  # the Authorization header's value

    def conn(self) -> Conn:
        return Conn(self.port)


def head(method: str, path: str, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: tunewatch", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def get_healthz(*headers: str) -> bytes:
    return head("GET", "/healthz", *headers)


def infer(served: Served, *headers: str, body: bytes = BODY, version: str = "1.1") -> bytes:
    """An inference request with the scorer's token, its body sent with it."""
    auth = f"Authorization: {served.scorer}"
    length = f"Content-Length: {len(body)}"
    return (
        head(
            "POST", INFER, auth, "Content-Type: application/json", length, *headers, version=version
        )
        + body
    )


def chunked(body: bytes) -> bytes:
    half = len(body) // 2
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:]))


def assert_healthz(answer: Answer) -> None:
    assert (answer.status, answer.json()) == (200, {"status": "ok"}), answer


def assert_refused(conn: Conn, status: int, code: str) -> None:
    answer = conn.answer()
    assert (answer.status, answer.json()["code"]) == (status, code), answer
    assert set(answer.json()) == {"error", "code"}
    assert answer.headers["connection"] == "close"
    assert conn.closed_by_server()


@pytest.fixture(scope="module")
def served(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """`tunewatch serve` (the CLI, its config and its uvicorn) serving the example models,
    with a scorer's token."""
    root = tmp_path_factory.mktemp("serve")
    settings: dict[str, Any] = {"scheduler": {"enabled": False}, "tuning": {"workers": 0}}
    daemon, tokens = make_daemon(root / "data", trained, extra=settings)
    daemon.close()
    port = free_port()
    raw = {
        "data_dir": str(root / "data"),
        "server": {"host": "127.0.0.1", "port": port, "request_read_timeout_s": 1},
        **settings,
    }
    with serving(raw, root / "tunewatch.yaml"):
        conn = Conn(port, timeout=START_S)  # waits in the listening queue until it serves
        conn.send(get_healthz())
        assert_healthz(conn.answer())
        conn.close()
        yield Served(port=port, scorer=f"Bearer {tokens['scorer']}")


@pytest.fixture
def conn(served: Served) -> Iterator[Conn]:
    c = served.conn()
    yield c
    c.close()


@pytest.fixture
def outputs(served: Served) -> Any:
    """The outputs of ``BODY``, asked without any upgrade."""
    c = served.conn()
    try:
        c.send(infer(served))
        answer = c.answer()
        assert answer.status == 200, answer
        return answer.json()["outputs"]
    finally:
        c.close()


# -- Upgrade: h2c ---------------------------------------------------------------------------


def test_an_inference_asking_to_upgrade_to_h2c_is_answered_with_its_outputs(
    served: Served, conn: Conn, outputs: Any
) -> None:
    conn.send(infer(served, *H2C))
    answer = conn.answer()
    assert answer.status == 200, answer
    assert "upgrade" not in answer.headers
    assert answer.json()["outputs"] == outputs
    conn.send(get_healthz())  # the body was read as a body: the connection serves on
    assert_healthz(conn.answer())


def test_inferences_asking_to_upgrade_pipelined_in_one_write_are_each_answered(
    served: Served, conn: Conn, outputs: Any
) -> None:
    conn.send(infer(served, *H2C) + infer(served, *H2C) + get_healthz(*WEBSOCKET))
    for _ in range(2):
        answer = conn.answer()
        assert answer.status == 200, answer
        assert answer.json()["outputs"] == outputs
    assert_healthz(conn.answer())


def test_a_chunked_inference_asking_to_upgrade_is_answered_with_its_outputs(
    served: Served, conn: Conn, outputs: Any
) -> None:
    request = head(
        "POST", INFER, f"Authorization: {served.scorer}", "Transfer-Encoding: chunked", *H2C
    )
    conn.send(request, chunked(BODY), b"0\r\n\r\n")
    answer = conn.answer()
    assert answer.status == 200, answer
    assert answer.json()["outputs"] == outputs
    conn.send(get_healthz())
    assert_healthz(conn.answer())


def test_a_body_after_an_upgrade_head_is_read_as_its_body_never_as_a_request(
    served: Served, conn: Conn
) -> None:
    """A tokenless head, answered 401 before its body, whose body is a request with a
    scorer's token: the body arrives in a later read, once the head was answered. It was
    executed (200 with the model, then the connection closed as it asked)."""
    smuggled = head(
        "GET", f"/v2/models/{MODEL}", f"Authorization: {served.scorer}", "Connection: close"
    )
    conn.send(head("POST", INFER, f"Content-Length: {len(smuggled)}", *H2C))
    answer = conn.answer()
    assert (answer.status, answer.json()["code"]) == (401, "unauthenticated")
    conn.send(smuggled, get_healthz())
    assert_healthz(conn.answer())


def test_a_body_sent_with_an_upgrade_head_is_read_as_its_body(served: Served, conn: Conn) -> None:
    """Head, body and the next request in one write: the body and all after it were
    dropped, the next request never answered."""
    smuggled = head("GET", f"/v2/models/{MODEL}", f"Authorization: {served.scorer}")
    request = head("POST", INFER, f"Content-Length: {len(smuggled)}", *H2C) + smuggled
    conn.send(request + get_healthz())
    answer = conn.answer()
    assert (answer.status, answer.json()["code"]) == (401, "unauthenticated")
    assert_healthz(conn.answer())


# -- Upgrade: websocket -----------------------------------------------------------------------


def test_a_websocket_upgrade_is_answered_as_http_and_the_connection_kept(conn: Conn) -> None:
    conn.send(get_healthz(*WEBSOCKET))
    answer = conn.answer()
    assert_healthz(answer)
    assert "upgrade" not in answer.headers
    conn.send(get_healthz())
    assert_healthz(conn.answer())


def test_a_tokenless_websocket_upgrade_with_a_body_is_answered_and_closed(conn: Conn) -> None:
    """The body never comes: the connection was held open, unanswered, for good."""
    conn.send(head("POST", INFER, "Content-Length: 1", *WEBSOCKET))
    answer = conn.answer()
    assert (answer.status, answer.json()["code"]) == (401, "unauthenticated")
    assert conn.closed_by_server()  # at the read timeout, its body never read


def test_a_websocket_upgrade_whose_body_never_comes_is_answered_408(
    served: Served, conn: Conn
) -> None:
    conn.send(
        head("POST", INFER, f"Authorization: {served.scorer}", "Content-Length: 1", *WEBSOCKET)
    )
    assert_refused(conn, 408, "request_timeout")


# -- a refusal pipelined behind a request ----------------------------------------------------


@pytest.mark.parametrize(
    ("second", "status", "code"),
    [
        pytest.param(b"NOT A REQUEST\r\n\r\n", 400, "bad_http_request", id="unparsable"),
        pytest.param(
            get_healthz("X-Big: " + "a" * (MAX_HEAD_BYTES + 1024)),
            431,
            "headers_too_large",
            id="head-past-the-limit",
        ),
        pytest.param(
            head("POST", INFER, "Transfer-Encoding: chunked") + b"zz\r\n",
            400,
            "bad_http_request",
            id="invalid-chunk",
        ),
        pytest.param(
            head("POST", INFER, "Transfer-Encoding: gzip", *H2C),
            400,
            "bad_http_request",
            id="upgrade-with-unframable-body",
        ),
    ],
)
def test_a_bad_request_pipelined_behind_an_inference_is_refused_after_its_answer(
    served: Served, conn: Conn, outputs: Any, second: bytes, status: int, code: str
) -> None:
    conn.send(infer(served) + second)
    answer = conn.answer()
    assert answer.status == 200, answer
    assert answer.json()["outputs"] == outputs
    assert_refused(conn, status, code)


def test_a_bad_request_pipelined_behind_two_is_refused_after_both(
    served: Served, conn: Conn
) -> None:
    conn.send(get_healthz() + infer(served) + b"NOT A REQUEST\r\n\r\n")
    assert_healthz(conn.answer())
    assert conn.answer().status == 200
    assert_refused(conn, 400, "bad_http_request")


def test_an_unframable_upgrade_request_is_refused_400(conn: Conn) -> None:
    conn.send(head("POST", INFER, "Transfer-Encoding: gzip", *H2C))
    answer = conn.answer()
    assert (answer.status, answer.json()["code"]) == (400, "bad_http_request")
    assert "Transfer-Encoding" in answer.json()["error"]


@pytest.mark.parametrize(
    "coding",
    [
        pytest.param("gzip, chunked", id="gzip"),
        pytest.param("deflate,chunked", id="deflate-no-space"),
        pytest.param("Identity, Chunked", id="identity"),
    ],
)
def test_a_transfer_coding_besides_chunked_is_answered_501_unread(
    served: Served, conn: Conn, coding: str
) -> None:
    """``Transfer-Encoding: gzip, chunked`` was de-chunked and its body read as if it
    were not compressed: a valid inference, 200, whatever the client had meant (RFC 9112
    §6.1: a transfer coding the server does not understand is answered 501)."""
    auth = f"Authorization: {served.scorer}"
    conn.send(head("POST", INFER, auth, f"Transfer-Encoding: {coding}") + chunked(BODY))
    conn.send(b"0\r\n\r\n")
    answer = conn.answer()
    assert (answer.status, answer.json()["code"]) == (501, "unsupported_transfer_coding"), answer
    assert repr(coding.split(",")[0].lower()) in answer.json()["error"]
    assert answer.headers["connection"] == "close"
    assert conn.closed_by_server()


def test_a_chunked_body_is_read_whatever_the_case_of_its_coding(
    served: Served, conn: Conn, outputs: Any
) -> None:
    auth = f"Authorization: {served.scorer}"
    conn.send(head("POST", INFER, auth, "Transfer-Encoding: Chunked") + chunked(BODY))
    conn.send(b"0\r\n\r\n")
    answer = conn.answer()
    assert answer.status == 200, answer
    assert answer.json()["outputs"] == outputs


# -- Expect: 100-continue ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "expect",
    [
        pytest.param("100-continue", id="exact"),
        pytest.param("100-continue ", id="trailing-space"),
        pytest.param("100-continue\t", id="trailing-tab"),
    ],
)
@pytest.mark.parametrize(
    ("authorized", "length", "status", "code"),
    [
        pytest.param(True, 9_000_000, 413, "body_too_large", id="too-large"),
        pytest.param(False, 200, 401, "unauthenticated", id="no-token"),
    ],
)
def test_a_request_refused_before_its_body_was_invited_closes_the_connection(
    served: Served,
    conn: Conn,
    authorized: bool,
    length: int,
    status: int,
    code: str,
    expect: str,
) -> None:
    """Else the client's next request is read as the body it was never asked for. The
    whitespace after the expectation is not part of it (RFC 9110 §5.5)."""
    auth = (f"Authorization: {served.scorer}",) if authorized else ()
    conn.send(head("POST", INFER, *auth, f"Expect: {expect}", f"Content-Length: {length}"))
    answer = conn.answer()
    assert (answer.status, answer.json()["code"]) == (status, code), answer
    assert answer.headers["connection"] == "close"
    assert conn.closed_by_server()


def test_a_request_refused_after_its_whole_body_arrived_keeps_the_connection(
    conn: Conn,
) -> None:
    """Sent with its body, uninvited: nothing of it is left to be mistaken for a request."""
    conn.send(head("POST", INFER, "Expect: 100-continue", "Content-Length: 2") + b"{}")
    answer = conn.answer()
    assert (answer.status, answer.json()["code"]) == (401, "unauthenticated")
    assert "connection" not in answer.headers
    conn.send(get_healthz())
    assert_healthz(conn.answer())


def test_an_http_1_0_request_expecting_100_continue_is_answered_without_it(
    served: Served, conn: Conn, outputs: Any
) -> None:
    conn.send(infer(served, "Expect: 100-continue", version="1.0"))
    answer = conn.answer()  # an interim 100 Continue came first
    assert answer.status == 200, answer
    assert answer.json()["outputs"] == outputs
    assert conn.closed_by_server()


# -- a chunked body's trailer ----------------------------------------------------------------


def chunked_infer(served: Served | None, body: bytes = BODY) -> bytes:
    """The head and the data of a chunked inference (with the scorer's token unless
    ``served`` is ``None``), its last chunk and trailer to come."""
    auth = () if served is None else (f"Authorization: {served.scorer}",)
    return head("POST", INFER, *auth, "Transfer-Encoding: chunked") + chunked(body)


@pytest.mark.parametrize(
    "unending",
    [
        pytest.param(b"0\r\nX-Trailer: ", id="trailer-field"),
        pytest.param(b"2;ext=", id="chunk-extension"),
    ],
)
def test_a_chunked_body_streamed_past_the_limit_between_its_data_is_answered_431(
    served: Served, conn: Conn, unending: bytes
) -> None:
    """1 MiB of one trailer value (or of one chunk's size line), 64 KiB at a time and
    never ended: the answer comes from the limit, not the end of the stream (which closed
    the connection unanswered)."""
    conn.send(chunked_infer(served) + unending, *[b"a" * 64 * KIB] * 16)
    conn.end()
    assert_refused(conn, 431, "headers_too_large")


def test_a_trailer_past_the_limit_sent_whole_is_answered_431(served: Served, conn: Conn) -> None:
    trailer = b"X-Trailer: " + b"a" * (MAX_HEAD_BYTES + KIB) + b"\r\n\r\n"
    conn.send(chunked_infer(served) + b"0\r\n" + trailer + get_healthz())
    assert_refused(conn, 431, "headers_too_large")


def test_an_answered_request_whose_trailer_passes_the_limit_closes_the_connection(
    conn: Conn,
) -> None:
    """Tokenless, answered 401 at once (or 431, if the trailer was read first): the rest
    of the body was only read to be dropped, and the trailer was read on. 256 KiB of it,
    then a request the daemon, its connection closed, never reads."""
    conn.send(
        head("POST", INFER, "Transfer-Encoding: chunked") + b"2\r\n{}\r\n0\r\nX-Trailer: ",
        *[b"a" * 64 * KIB] * 4,
        b"\r\n\r\n" + get_healthz(),
    )
    answer = conn.answer()
    assert (answer.status, answer.json()["code"]) in {
        (401, "unauthenticated"),
        (431, "headers_too_large"),
    }, answer
    assert conn.closed_by_server()


def test_a_trailer_under_the_limit_is_read_and_the_connection_kept(
    served: Served, conn: Conn, outputs: Any
) -> None:
    trailer = b"X-Checksum: " + b"a" * (MAX_HEAD_BYTES - KIB) + b"\r\n\r\n"
    conn.send(chunked_infer(served) + b"0\r\n" + trailer + get_healthz())
    answer = conn.answer()
    assert answer.status == 200, answer
    assert answer.json()["outputs"] == outputs
    assert_healthz(conn.answer())


def test_a_body_of_one_byte_chunks_is_answered_however_long_their_size_lines(
    served: Served, conn: Conn, outputs: Any
) -> None:
    """Only the bytes after the body's last data are held to the limit, not all its
    framing: here five bytes of it to each byte of data, 96 KiB in all."""
    body = BODY + b" " * (16 * KIB)
    chunks = b"".join(b"1\r\n%c\r\n" % byte for byte in body)
    assert len(chunks) - len(body) > MAX_HEAD_BYTES
    request = head("POST", INFER, f"Authorization: {served.scorer}", "Transfer-Encoding: chunked")
    conn.send(request, *(chunks[i : i + 64 * KIB] for i in range(0, len(chunks), 64 * KIB)))
    conn.send(b"0\r\n\r\n")
    answer = conn.answer()
    assert answer.status == 200, answer
    assert answer.json()["outputs"] == outputs


def test_an_authorization_only_in_the_trailer_authenticates_nothing(
    served: Served, conn: Conn
) -> None:
    """A tokenless head whose trailer carries a scorer's token, sent in one write: uvicorn
    added the trailer's fields to the request's headers, and the route, run after the
    whole write was parsed, read the token there (200; 401 when the trailer came in a
    later read). RFC 9110 §6.5.1: a trailer field is not merged into the header section."""
    trailer = f"0\r\nAuthorization: {served.scorer}\r\n\r\n".encode()
    conn.send(chunked_infer(None) + trailer)
    answer = conn.answer()
    assert (answer.status, answer.json()["code"]) == (401, "unauthenticated"), answer


def test_a_content_encoding_only_in_the_trailer_codes_nothing(
    served: Served, conn: Conn, outputs: Any
) -> None:
    """``Content-Encoding: gzip`` in the trailer, sent in one write: a plain body is
    scored, a gzip one is not inflated (it was the other way round)."""
    trailer = b"0\r\nContent-Encoding: gzip\r\n\r\n"
    conn.send(chunked_infer(served) + trailer)
    answer = conn.answer()
    assert answer.status == 200, answer
    assert answer.json()["outputs"] == outputs
    conn.send(chunked_infer(served, gzip.compress(BODY)) + trailer)
    answer = conn.answer()
    assert (answer.status, answer.json()["code"]) == (400, "invalid_json"), answer


# -- Host -------------------------------------------------------------------------------------


VALID_HOSTS = (
    "127.0.0.1:80",
    "[::1]:80",
    "[::ffff:127.0.0.1]",
    "[v1.fe80::a+en1]",
    "a.b-1",
    "t%C3%A9:",
)
INVALID_HOSTS = ("a b", "[", "[::1", "[zz]", "[fe80::1%25en1]", "a:80x", "a/b", "a@b")


@pytest.mark.parametrize(
    ("version", "hosts"),
    [
        pytest.param("1.1", (), id="none"),
        pytest.param("1.1", ("a", "b"), id="two"),
        pytest.param("1.1", ("a", "a"), id="two-alike"),
        pytest.param("1.0", ("a", "b"), id="two-in-http-1.0"),
        *(pytest.param("1.1", (host,), id=f"invalid-{host}") for host in INVALID_HOSTS),
    ],
)
def test_a_request_without_one_valid_host_is_refused_400(
    conn: Conn, version: str, hosts: tuple[str, ...]
) -> None:
    """RFC 9112 §3.2: an HTTP/1.1 request without Host, and any with two Host lines or an
    invalid one, is answered 400 (all were served)."""
    lines = [f"GET /healthz HTTP/{version}", *(f"Host: {host}" for host in hosts)]
    conn.send(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert_refused(conn, 400, "bad_http_request")


@pytest.mark.parametrize("host", [*VALID_HOSTS, pytest.param("", id="empty")])
def test_a_request_with_one_valid_host_is_served(conn: Conn, host: str) -> None:
    conn.send(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert_healthz(conn.answer())


def test_an_http_1_0_request_without_host_is_served(conn: Conn) -> None:
    conn.send(b"GET /healthz HTTP/1.0\r\n\r\n")
    assert_healthz(conn.answer())
    assert conn.closed_by_server()


def test_a_hostless_request_pipelined_behind_one_is_refused_after_it(conn: Conn) -> None:
    conn.send(get_healthz() + b"GET /healthz HTTP/1.1\r\n\r\n")
    assert_healthz(conn.answer())
    assert_refused(conn, 400, "bad_http_request")


# -- a client gone with requests pipelined -----------------------------------------------------


def test_a_client_gone_while_its_pipelined_requests_run_is_no_error(tmp_path: Path) -> None:
    """30 requests in one write, the first answer read, the connection closed, ten times;
    the daemon's whole log is read once it has stopped (its requests ended first)."""
    port = free_port()
    raw = {
        "data_dir": str(tmp_path / "data"),
        "server": {"host": "127.0.0.1", "port": port},
        "scheduler": {"enabled": False},
        "tuning": {"workers": 0},
    }
    with serving(raw, tmp_path / "tunewatch.yaml") as log:
        for _ in range(10):
            conn = Conn(port, timeout=START_S)  # the first waits until the daemon serves
            conn.send(get_healthz() * 30)
            assert_healthz(conn.answer())
            conn.close()
    errors = [line for line in log if "Exception in ASGI" in line or "unhandled error" in line]
    assert not errors, "".join(log)
