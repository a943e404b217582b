"""The scoring benchmark's open-loop load generator against a real loopback server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def server() -> Iterator[int]:
    """An HTTP/1.1 keep-alive server on loopback. By path: ``/infer`` answers 200, each
    answer written in two parts 2 ms apart (headers and the body's first byte, then the
    rest); ``/slow`` holds every 5th answer for 50 ms; ``/stall`` holds the 50th to 69th
    answers for 100 ms each, a hiccup that keeps every connection busy; ``/fail`` answers
    503; ``/close`` closes the connection instead of answering every 10th request."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(256)
    port = server.getsockname()[1]
    stop = threading.Event()
    lock = threading.Lock()
    count = [0]

    def answer(conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while not stop.is_set():
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                while b"\r\n\r\n" in buffer:
                    head, _, rest = buffer.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    if len(rest) < length:
                        break
                    buffer = rest[length:]
                    path = head.split(b" ")[1]
                    with lock:
                        count[0] += 1
                        n = count[0]
                    if path == b"/close" and n % 10 == 0:
                        return
                    if path == b"/slow" and n % 5 == 0:
                        time.sleep(0.05)
                    if path == b"/stall" and 50 <= n < 70:
                        time.sleep(0.1)
                    status = b"503 Unavailable" if path == b"/fail" else b"200 OK"
                    body = b'{"ok": true}'
                    head_out = b"HTTP/1.1 " + status + b"\r\nContent-Length: 12\r\n\r\n"
                    conn.sendall(head_out + body[:1])
                    time.sleep(0.002)
                    conn.sendall(body[1:])

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            # as uvicorn does: else an answer's second part waits on the client's delayed
            # ACK (40 ms) once a kept-alive connection leaves TCP's quick-ACK start
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join()
    server.close()


def _run(port: int, path: str, tmp_path: Path) -> dict[str, float]:
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"x": 1}))
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "_openloop.py"),
            "--port",
            str(port),
            "--path",
            path,
            "--body",
            str(body),
            "--header",
            "Authorization: Bearer t",
            "--rate",
            "400",
            "--duration",
            "0.5",
            "--connections",
            "16",
            "--drain-timeout",
            "1",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


def test_every_scheduled_request_is_answered_and_timed(server: int, tmp_path: Path) -> None:
    result = _run(server, "/infer", tmp_path)
    assert result["answered"] == result["sent"] == 200
    assert result["errors"] == 0 and result["lost"] == 0
    # Each answer arrives in two parts 2 ms apart: a request is answered by its whole body.
    assert 0.002 <= result["p50_s"] <= result["p99_s"] <= result["p999_s"]


def test_latency_is_each_requests_own(server: int, tmp_path: Path) -> None:
    # Every 5th answer is held 50 ms: those, and only those, are slow.
    result = _run(server, "/slow", tmp_path)
    assert result["answered"] == result["sent"] and result["errors"] == 0
    assert result["p50_s"] < 0.05 <= result["p99_s"]


def test_a_stalled_server_is_charged_the_wait_and_gets_no_more_connections(
    server: int, tmp_path: Path
) -> None:
    """While every connection is busy, a due request waits for one, as in wrk2 and a load
    balancer's pool: opening a connection per due request turned a server's hiccup into a
    storm of new connections it had to accept as well as answer."""
    result = _run(server, "/stall", tmp_path)
    assert result["answered"] == result["sent"] and result["errors"] == 0
    assert result["connections_opened"] == 16
    assert result["connections"] == 16
    # requests due during the stall waited for a connection: the wait is in their latency
    assert result["p99_s"] >= 0.05
    assert result["p99_from_send_s"] < result["p99_s"]


def test_non_200_answers_are_counted_as_errors(server: int, tmp_path: Path) -> None:
    result = _run(server, "/fail", tmp_path)
    assert result["answered"] == 200
    assert result["errors"] == 200


def test_requests_on_a_closed_connection_are_counted_as_lost(server: int, tmp_path: Path) -> None:
    result = _run(server, "/close", tmp_path)
    assert result["lost"] > 0
    assert result["answered"] + result["lost"] == result["sent"]
