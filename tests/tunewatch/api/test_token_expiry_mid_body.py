"""A token whose cached answer expires while an inference body is still arriving is
looked up again off the event loop: the front had looked it up in a worker thread before
reading the body, and the request's own check then looked it up on the loop, so a hung
database stalled every request, liveness included, for ``lock_timeout_s``."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel

WAIT_S = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def served(trained: list[ExampleModel], tmp_path: Path) -> Iterator[tuple[Any, str, dict]]:
    daemon, tokens = make_daemon(tmp_path, trained, extra={"scheduler": {"enabled": False}})
    with BackgroundServer(daemon.app) as server:
        yield daemon, server.url, tokens
    daemon.close()


def test_a_token_expiring_while_the_body_arrives_is_looked_up_off_the_loop(
    served: tuple[Any, str, dict], trained: list[ExampleModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon, url, tokens = served
    auth = daemon.auth
    clock = FakeClock()
    monkeypatch.setattr(auth, "_clock", clock)
    on_loop: list[str] = []
    lookup = auth._lookup

    def watched_lookup(digest: str) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return lookup(digest)
        on_loop.append(threading.current_thread().name)
        return lookup(digest)

    monkeypatch.setattr(auth, "_lookup", watched_lookup)
    resolved = threading.Event()
    resolve = auth.resolve

    def watched_resolve(header: str | None) -> None:
        resolve(header)
        resolved.set()

    monkeypatch.setattr(auth, "resolve", watched_resolve)
    n_features = len(trained[0].metadata.feature_names)
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, n_features],
                    "datatype": "FP32",
                    "data": [0.5] * n_features,
                }
            ]
        }
    ).encode()
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=WAIT_S) as conn:
        head = (
            f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: test\r\n"
            f"Authorization: Bearer {tokens['scorer']}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        conn.sendall(head + body[:10])
        assert resolved.wait(WAIT_S)  # looked up and cached, the body still arriving
        clock.now += 3600.0  # the cached answer expires meanwhile
        conn.sendall(body[10:])
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert on_loop == []
