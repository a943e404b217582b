"""The scoring benchmark's open-loop load generator against a real loopback server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def slow_every_third() -> Iterator[int]:
    """An HTTP/1.1 keep-alive server answering 200 (every third answer split in two
    writes, with responses of one read sometimes pipelined) and 503 for path /fail."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    port = server.getsockname()[1]
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        buffer = b""
        n = 0
        with conn:
            while not stop.is_set():
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                out = b""
                while b"\r\n\r\n" in buffer:
                    head, _, rest = buffer.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    if len(rest) < length:
                        break
                    buffer = rest[length:]
                    status = b"503 Unavailable" if b" /fail " in head else b"200 OK"
                    body = b'{"ok": true}'
                    out += (
                        b"HTTP/1.1 "
                        + status
                        + b"\r\nContent-Length: "
                        + str(len(body)).encode()
                        + b"\r\n\r\n"
                        + body
                    )
                    n += 1
                if out and n % 3 == 0:
                    conn.sendall(out[:7])
                    conn.sendall(out[7:])
                elif out:
                    conn.sendall(out)

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
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
            "4",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


def test_every_scheduled_request_is_answered_and_timed(
    slow_every_third: int, tmp_path: Path
) -> None:
    result = _run(slow_every_third, "/infer", tmp_path)
    assert result["sent"] == 200
    assert result["answered"] == 200
    assert result["errors"] == 0
    assert 0 < result["p50_s"] <= result["p99_s"] <= result["p999_s"]
    assert result["p99_from_send_s"] <= result["p99_s"] + 1e-9


def test_non_200_answers_are_counted_as_errors(slow_every_third: int, tmp_path: Path) -> None:
    result = _run(slow_every_third, "/fail", tmp_path)
    assert result["answered"] == 200
    assert result["errors"] == 200
