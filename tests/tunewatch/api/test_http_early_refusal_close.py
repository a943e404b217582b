"""A request answered before its body arrived, on a connection to be closed, gets its
answer, not a reset.

A client sending ``Connection: close`` (Python's urllib does) with a body over
``server.max_body_bytes`` was answered 413 at once, by its Content-Length, and the
connection closed with the body still arriving: the kernel answers bytes to a closed
socket with a reset, which destroyed the 413 before the client (which sends its whole
body before it reads) read it — it saw ``ConnectionResetError`` or ``BrokenPipeError``.
Now such a connection is half-closed and the rest of the request read and dropped, until
the body ends, the client closes, or the request's read timeout (or a byte cap) is up.

A head past the limit, sent whole before its answer is read, is the same: its 431 was
lost to a reset too.

The read timeout here is 2 s; the sockets' own timeouts only bound each wait, so that an
answer that does not come fails the test rather than hanging it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.tunewatch.api.raw_http import Answer, Conn
from tests.tunewatch.conftest import MODEL, make_daemon
from tests.tunewatch.serve_process import START_S, free_port, serving
from tunewatch._example import ExampleModel
from tunewatch.api._http_protocol import MAX_HEAD_BYTES

KIB = 1024
MIB = 1024 * KIB
MAX_BODY_BYTES = 64 * KIB
INFER = f"/v2/models/{MODEL}/infer"
ATTEMPTS = 5
WAIT_S = 30.0  # a bound on each wait, never an expected duration


@dataclass(frozen=True)
class Served:
    port: int
    scorer: str  # the Authorization header's value


@pytest.fixture(scope="module")
def served(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """`tunewatch serve` (the CLI, its config and its uvicorn) serving the example models,
    with a small body limit and a scorer's token."""
    root = tmp_path_factory.mktemp("serve")
    settings: dict[str, Any] = {"scheduler": {"enabled": False}, "tuning": {"workers": 0}}
    daemon, tokens = make_daemon(root / "data", trained, extra=settings)
    daemon.close()
    port = free_port()
    server = {
        "host": "127.0.0.1",
        "port": port,
        "max_body_bytes": MAX_BODY_BYTES,
        "request_read_timeout_s": 2,
    }
    with serving({"data_dir": str(root / "data"), "server": server, **settings}, root / "t.yaml"):
        conn = Conn(port, timeout=START_S)  # waits in the listening queue until it serves
        conn.send(b"GET /healthz HTTP/1.1\r\nHost: tunewatch\r\n\r\n")
        assert conn.answer().status == 200
        conn.close()
        yield Served(port=port, scorer=f"Bearer {tokens['scorer']}")


def head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: tunewatch", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def big_body(size: int) -> bytes:
    """A JSON inference body of about ``size`` bytes."""
    data = json.dumps([0.1] * (size // 5))
    return f'{{"inputs": [{{"name": "input", "datatype": "FP32", "data": {data}}}]}}'.encode()


def send_whole_then_answer(port: int, request: bytes) -> Answer:
    """As http.client and urllib do: the whole request sent, then the answer read. A
    reset while sending, or before the answer is read, fails."""
    conn = Conn(port, timeout=WAIT_S)
    try:
        conn.sock.sendall(request)  # raises on a reset, where Conn.send would not
        answer = conn.answer()
        assert conn.closed_by_server()
        return answer
    finally:
        conn.close()


def assert_refused(answer: Answer, status: int, code: str) -> None:
    assert (answer.status, answer.json()["code"]) == (status, code), answer
    assert answer.headers["connection"] == "close"


def test_a_body_over_the_limit_with_connection_close_gets_its_413(served: Served) -> None:
    body = big_body(8 * MIB)
    request = head(
        INFER,
        f"Authorization: {served.scorer}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
    )
    for _ in range(ATTEMPTS):
        answer = send_whole_then_answer(served.port, request + body)
        assert_refused(answer, 413, "body_too_large")


def test_a_chunked_body_over_the_limit_with_connection_close_gets_its_413(
    served: Served,
) -> None:
    """Refused once the route has read past the limit, the rest of the chunks unread:
    read and dropped to their end."""
    body = big_body(8 * MIB)
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[at : at + MIB]), body[at : at + MIB])
        for at in range(0, len(body), MIB)
    )
    request = head(
        INFER,
        f"Authorization: {served.scorer}",
        "Content-Type: application/json",
        "Transfer-Encoding: chunked",
        "Connection: close",
    )
    for _ in range(ATTEMPTS):
        answer = send_whole_then_answer(served.port, request + chunks + b"0\r\n\r\n")
        assert_refused(answer, 413, "body_too_large")


def test_a_head_past_the_limit_sent_whole_gets_its_431(served: Served) -> None:
    value = "a" * (4 * MIB)
    request = head("/healthz", f"X-Large: {value}", "Connection: close")
    assert len(request) > MAX_HEAD_BYTES
    for _ in range(ATTEMPTS):
        answer = send_whole_then_answer(served.port, request)
        assert_refused(answer, 431, "headers_too_large")


def test_an_endless_sender_answered_early_is_cut_off_by_the_read_timeout(
    served: Served,
) -> None:
    """A body declared far over the limit, sent on and on after its 413: the connection
    is closed once the request's read timeout is up (its sends then fail), not held for
    as long as the client goes on."""
    conn = Conn(served.port, timeout=WAIT_S)
    stop = threading.Event()
    failures: list[OSError] = []

    def send_on() -> None:
        piece = b"0" * KIB
        while not stop.is_set():
            try:
                conn.sock.sendall(piece)
            except OSError as exc:
                failures.append(exc)
                return
            stop.wait(0.01)  # a slow sender's pace, not a synchronisation

    try:
        conn.sock.sendall(
            head(
                INFER,
                f"Authorization: {served.scorer}",
                f"Content-Length: {10**12}",
                "Connection: close",
            )
        )
        assert_refused(conn.answer(), 413, "body_too_large")
        writer = threading.Thread(target=send_on, daemon=True)
        writer.start()
        writer.join(WAIT_S)
        stop.set()
        assert not writer.is_alive(), "the connection was held past the read timeout"
        assert failures and isinstance(failures[0], (BrokenPipeError, ConnectionResetError))
    finally:
        stop.set()
        conn.close()
