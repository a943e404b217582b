"""A request must arrive within ``server.request_read_timeout_s`` of its first byte.

Nothing bounded the time a request's head or body took to arrive: a head trickled a byte
every 5 s, a body to the login form (open to anyone) and an inference body all held their
connections, unanswered, for as long as the client went on (40 s and more; on the
inference route with up to ``server.max_body_bytes`` of buffer each). Now such a request
is answered 408 ``request_timeout`` and its connection closed; a request read whole is
not timed however long its route runs, nor is the time the server itself keeps the rest
of a request waiting (a body the route has not asked for yet, ``100 Continue`` not yet
sent), nor an idle kept-alive connection between requests.

The timeouts here are 1 s; the sockets' own timeouts only bound each wait, so that a
request left unanswered fails the test rather than hanging it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests.tunewatch.api.raw_http import Conn
from tests.tunewatch.serve_process import START_S, free_port, serving
from tunewatch._config import build_config
from tunewatch._errors import ConfigError
from tunewatch.api._http_protocol import bounded_protocol

WAIT_S = 30.0  # a bound on each wait, never an expected duration


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: tunewatch\r\n\r\n".encode()


def assert_timed_out(conn: Conn, part: str) -> None:
    answer = conn.answer()
    assert answer.status == 408, answer
    payload = answer.json()
    assert payload["code"] == "request_timeout"
    assert set(payload) == {"error", "code"}
    assert part in payload["error"]
    assert answer.headers["connection"] == "close"
    assert conn.closed_by_server()


# -- `tunewatch serve` with server.request_read_timeout_s: 1 -------------------------------


@pytest.fixture(scope="module")
def serve_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """`tunewatch serve` (the CLI, its config and its uvicorn) on a loopback port."""
    root = tmp_path_factory.mktemp("serve")
    port = free_port()
    raw = {
        "data_dir": str(root / "data"),
        "server": {"host": "127.0.0.1", "port": port, "request_read_timeout_s": 1},
        "scheduler": {"enabled": False},
        "tuning": {"workers": 0},
    }
    with serving(raw, root / "tunewatch.yaml"):
        # connections now wait in the listening socket's queue until uvicorn serves
        conn = Conn(port, timeout=START_S)
        conn.send(get("/healthz"))
        assert conn.answer().status == 200
        conn.close()
        yield port


def test_a_head_not_finished_in_time_is_answered_408_after_a_kept_alive_request(
    serve_port: int,
) -> None:
    conn = Conn(serve_port)
    try:
        conn.send(get("/healthz"))
        assert conn.answer().status == 200
        conn.send(b"GET /healthz HTTP/1.1\r\nHost: tunewatch\r\nX-Pad: ")
        conn.send(b"a")
        assert_timed_out(conn, "head")
    finally:
        conn.close()


def test_a_body_not_finished_in_time_is_answered_408(serve_port: int) -> None:
    """The login form is open to anyone: its body was read for as long as it took."""
    conn = Conn(serve_port)
    try:
        conn.send(
            b"POST /dashboard/login HTTP/1.1\r\nHost: tunewatch\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
            b"token="
        )
        conn.send(b"a")
        assert_timed_out(conn, "body")
    finally:
        conn.close()


def test_a_kept_alive_connection_idle_between_requests_is_not_timed(serve_port: int) -> None:
    """The kept-alive connection waits, idle, while another request's head times out
    (past the read timeout, within uvicorn's keep-alive of 5 s), then serves again."""
    idle = Conn(serve_port)
    slow = Conn(serve_port)
    try:
        idle.send(get("/healthz"))
        assert idle.answer().status == 200
        slow.send(b"GET /healthz HTTP/1.1\r\nHost: tunewatch\r\n")
        assert_timed_out(slow, "head")
        idle.send(get("/healthz"))
        assert idle.answer().status == 200
        fresh = Conn(serve_port)
        fresh.send(get("/healthz"))
        assert fresh.answer().status == 200
        fresh.close()
    finally:
        idle.close()
        slow.close()


# -- the protocol under a route that takes its time ---------------------------------------


class Gate:
    """What the route below waits for and signals; set from the test's thread."""

    def __init__(self) -> None:
        self.reached = threading.Event()  # the route got as far as it waits
        self.release = threading.Event()


class WaitingApp:
    """``/after-body`` reads its body, then waits; ``/before-body`` waits, then reads
    its body; both answer the body's length. Anything else: 204."""

    def __init__(self) -> None:
        self.gate = Gate()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        size = 0
        if scope["path"] == "/before-body":
            await self._wait()
        if scope["method"] == "POST":
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                size += len(message["body"])
                if not message["more_body"]:
                    break
        if scope["path"] == "/after-body":
            await self._wait()
        body = json.dumps({"size": size}).encode()
        status = 200 if scope["path"] != "/" else 204
        headers = [(b"content-type", b"application/json")]
        if status == 200:
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body if status == 200 else b""})

    async def _wait(self) -> None:
        self.gate.reached.set()
        await asyncio.to_thread(self.gate.release.wait, WAIT_S)


@pytest.fixture
def waiting() -> Iterator[tuple[int, Gate]]:
    """The app under uvicorn with the bounded protocol, read timeout 1 s."""
    app = WaitingApp()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            http=bounded_protocol(read_timeout_s=1.0),
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()  # connections wait in the socket's queue until it serves
    try:
        yield sock.getsockname()[1], app.gate
    finally:
        app.gate.release.set()
        server.should_exit = True
        thread.join(WAIT_S)
        sock.close()


def _wait_out_one_timeout(port: int) -> None:
    """Return once a read timeout has passed: a head left unfinished times out."""
    slow = Conn(port)
    try:
        slow.send(b"GET / HTTP/1.1\r\nHost: t\r\n")
        assert_timed_out(slow, "head")
    finally:
        slow.close()


def test_a_route_running_past_the_timeout_after_its_body_arrived_is_answered(
    waiting: tuple[int, Gate],
) -> None:
    port, gate = waiting
    conn = Conn(port)
    try:
        conn.send(b"POST /after-body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        assert gate.reached.wait(WAIT_S)
        _wait_out_one_timeout(port)  # begun after the body was read whole
        gate.release.set()
        answer = conn.answer()
        assert (answer.status, answer.json()) == (200, {"size": 5})
    finally:
        conn.close()


def test_a_body_the_route_has_not_read_yet_is_not_timed(waiting: tuple[int, Gate]) -> None:
    """160 KiB sent at once: uvicorn stops reading past 64 KiB until the route asks for
    the body, and the rest of it is then the server's delay, not the client's."""
    port, gate = waiting
    conn = Conn(port)
    size = 160 * 1024
    try:
        conn.send(
            b"POST /before-body HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size
            + b"x" * size
        )
        assert gate.reached.wait(WAIT_S)
        _wait_out_one_timeout(port)
        gate.release.set()
        answer = conn.answer()
        assert (answer.status, answer.json()) == (200, {"size": size})
    finally:
        conn.close()


def test_a_body_waiting_for_100_continue_is_not_timed_until_invited(
    waiting: tuple[int, Gate],
) -> None:
    port, gate = waiting
    conn = Conn(port)
    try:
        conn.send(
            b"POST /before-body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert gate.reached.wait(WAIT_S)
        _wait_out_one_timeout(port)  # the route has not asked for the body yet
        gate.release.set()
        assert conn.answer().status == 100
        conn.send(b"hello")
        answer = conn.answer()
        assert (answer.status, answer.json()) == (200, {"size": 5})
    finally:
        conn.close()


def test_a_body_invited_but_never_sent_is_answered_408(waiting: tuple[int, Gate]) -> None:
    port, gate = waiting
    gate.release.set()
    conn = Conn(port)
    try:
        conn.send(
            b"POST /before-body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert conn.answer().status == 100
        conn.send(b"he")
        assert_timed_out(conn, "body")
    finally:
        conn.close()


def test_a_connection_that_sends_nothing_is_closed_unanswered(waiting: tuple[int, Gate]) -> None:
    port, _ = waiting
    conn = Conn(port)
    try:
        assert conn.closed_by_server()
    finally:
        conn.close()


@pytest.mark.parametrize("value", [0, -1, float("inf"), float("nan"), 1e12])
def test_the_read_timeout_must_be_a_positive_bounded_duration(value: float) -> None:
    with pytest.raises(ConfigError, match="server.request_read_timeout_s"):
        build_config({"server": {"request_read_timeout_s": value}}, env={})


def test_the_read_timeout_defaults_to_30_s(tmp_path: Path) -> None:
    config = build_config({"data_dir": str(tmp_path)}, env={})
    assert config.server.request_read_timeout_s == 30.0
