"""`tunewatch serve` under its open-file limit: connections past what its descriptors allow
are answered 503, not dropped; the soft limit is raised to the hard one at start.

At the limit, accept() failed with EMFILE and uvloop accepted and closed each waiting
connection: under 128 descriptors with 500 kept-alive connections every fresh request
(scoring, readyz, feedback, register) saw "Server disconnected without sending a
response", and nothing in the log said why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.tunewatch.serve_process import START_S, free_port, serve_process
from tunewatch._errors import TunewatchError
from tunewatch._fd_limit import (
    FD_RESERVE,
    LOW_NOFILE,
    MIN_CONNECTIONS,
    REFUSALS_LOGGED_EVERY_S,
    _OverLimit,
    connection_limit,
)

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
INFER_BODY = {
    "id": "r1",
    "inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [0]}],
}


class Served:
    def __init__(self, process: subprocess.Popen[str], log: list[str], port: int) -> None:
        self.process = process
        self.log = log
        self.port = port
        self.url = f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def serving_with_nofile(tmp_path: Path, soft: int, hard: int) -> Iterator[Served]:
    """`tunewatch serve` started under RLIMIT_NOFILE ``(soft, hard)``, until the block ends."""
    port = free_port()
    raw = {"data_dir": str(tmp_path / "data"), "server": {"port": port}}
    with serve_process(
        raw,
        tmp_path / "tunewatch.yaml",
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
    ) as (process, log):
        yield Served(process, log, port)


def _hold(port: int) -> socket.socket | bytes:
    """A connection that sent one request and stays open (kept alive) when answered 200;
    else the answer it got, its connection closed (b"" when dropped without one)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(HEALTHZ)
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    if answer.startswith(b"HTTP/1.1 200"):
        return sock
    sock.close()
    return answer


def test_connections_past_the_descriptor_budget_are_answered_503_not_dropped(
    tmp_path: Path,
) -> None:
    nofile = 256
    limit = connection_limit(nofile)
    assert limit < nofile
    with serving_with_nofile(tmp_path, nofile, nofile) as served:
        warning = [line for line in served.log if "WARNING" in line and "RLIMIT_NOFILE" in line]
        assert warning, "".join(served.log)
        assert f"{nofile}" in warning[0] and f"{limit}" in warning[0], warning

        # answered by the app (no token) while below the limit
        before = httpx.post(f"{served.url}/v2/models/credit/infer", json=INFER_BODY)
        assert before.status_code == 401, before.text

        held: list[socket.socket] = []
        refused: list[bytes] = []
        try:
            for _ in range(nofile):  # as many as the process has descriptors in all
                got = _hold(served.port)
                if isinstance(got, socket.socket):
                    held.append(got)
                else:
                    refused.append(got)
            assert len(held) < limit
            assert refused, "none of the connections past the limit was refused"
            # every one past the limit was answered, none closed without an answer
            assert all(answer.startswith(b"HTTP/1.1 503") for answer in refused), refused[:3]

            fresh = httpx.post(f"{served.url}/v2/models/credit/infer", json=INFER_BODY)
            assert fresh.status_code == 503, fresh.text
            assert fresh.headers["connection"] == "close"
            assert fresh.json()["code"] == "connection_limit"
            assert str(limit) in fresh.json()["error"]
        finally:
            for sock in held:
                sock.close()
        # every refusal counted, as the app's own errors are
        exposition = httpx.get(f"{served.url}/metrics").text
        counted = sum(
            float(line.rsplit(" ", 1)[1])
            for line in exposition.splitlines()
            if line.startswith('tunewatch_http_errors_total{code="connection_limit"}')
        )
        assert counted == len(refused) + 1, exposition
        assert f'tunewatch_http_requests_total{{route="unmatched",status="503"}} {counted}' in (
            exposition
        )
    # its whole log, now that it stopped: one line for the refusals, not one a request
    over = [line for line in served.log if "request(s) answered 503" in line]
    assert len(over) == 1, over
    assert not any("Exceeded concurrency limit" in line for line in served.log)


def test_the_connection_limit_keeps_every_reserved_descriptor() -> None:
    assert connection_limit(1024) == 1024 - FD_RESERVE
    assert connection_limit(256) == 256 - FD_RESERVE
    # the lowest limit served: the reserve and the fewest connections worth serving
    assert connection_limit(FD_RESERVE + MIN_CONNECTIONS) == MIN_CONNECTIONS


@pytest.mark.parametrize("nofile", [64, 128, FD_RESERVE + MIN_CONNECTIONS - 1])
def test_an_open_file_limit_below_the_reserve_and_minimum_is_refused(nofile: int) -> None:
    # at 64 the daemon allowed 32 connections and kept 32 descriptors, under the 46 a busy
    # one holds besides them: SQLite failed to open its database (503 store_unavailable)
    # and uvloop closed connections unanswered
    with pytest.raises(TunewatchError) as caught:
        connection_limit(nofile)
    assert caught.value.code == "open_file_limit_too_low"
    message = caught.value.message
    assert f"open-file limit (RLIMIT_NOFILE) {nofile} " in message, message
    assert f"`ulimit -n {FD_RESERVE + MIN_CONNECTIONS}`" in message, message


def test_serve_under_too_low_an_open_file_limit_is_one_error_line_and_exit_2_without_a_store(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    config = tmp_path / "tunewatch.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(data), "server": {"port": free_port()}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEWATCH_")}
    result = subprocess.run(
        [sys.executable, "-m", "tunewatch._cli", "--config", str(config), "serve"],
        capture_output=True,
        text=True,
        env=env,
        timeout=START_S,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)),
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tunewatch: error: open-file limit (RLIMIT_NOFILE) 64 "), lines
    assert f"`ulimit -n {FD_RESERVE + MIN_CONNECTIONS}`" in lines[0], lines
    assert not (data / "tunewatch.db").exists()


def test_serve_raises_its_soft_open_file_limit_to_the_hard_limit(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 1024:
        pytest.skip(f"the hard RLIMIT_NOFILE here ({hard}) leaves nothing to raise from 1024")
    with serving_with_nofile(tmp_path, 1024, hard) as served:
        limits = Path(f"/proc/{served.process.pid}/limits").read_text()
        (line,) = (line for line in limits.splitlines() if line.startswith("Max open files"))
        assert line.split()[3:5] == [str(hard), str(hard)], line
        raised = [line for line in served.log if "RLIMIT_NOFILE" in line]
        assert len(raised) == 1, raised
        assert " INFO " in raised[0] and f"from 1024 to {hard}" in raised[0], raised
        if hard >= LOW_NOFILE:
            assert "WARNING" not in raised[0]


def test_refusals_past_the_limit_are_logged_once_a_minute_with_their_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    answer = _OverLimit(limit=64, clock=lambda: now[0])
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def receive() -> dict[str, object]:
        raise AssertionError("the body is never read")

    def refuse(times: int) -> None:
        for _ in range(times):
            asyncio.run(answer({"type": "http"}, receive, send))  # type: ignore[arg-type]

    with caplog.at_level(logging.WARNING, logger="tunewatch._fd_limit"):
        refuse(3)
        now[0] = REFUSALS_LOGGED_EVERY_S - 1
        refuse(4)
        now[0] = REFUSALS_LOGGED_EVERY_S
        refuse(1)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("1 request(s) answered 503 connection_limit: 64 connections")
    assert lines[1].startswith("7 request(s) answered 503")  # the 6 held back and this one
    assert sent[0] == {
        "type": "http.response.start",
        "status": 503,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(sent[1]["body"])).encode()),  # type: ignore[arg-type]
            (b"retry-after", b"1"),
            (b"connection", b"close"),
        ],
    }
    assert json.loads(sent[1]["body"])["code"] == "connection_limit"  # type: ignore[arg-type]
