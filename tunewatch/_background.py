"""uvicorn in a background thread on a loopback port: for the demo, tests and benchmarks."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from tunewatch.api._http_protocol import BoundedHttpToolsProtocol


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BackgroundServer:
    """Serves ``app`` on 127.0.0.1 while the ``with`` block runs."""

    def __init__(
        self,
        app: Any,
        *,
        port: int | None = None,
        trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1"),
    ) -> None:
        self.port = port or _free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                access_log=False,
                lifespan="on",
                http=BoundedHttpToolsProtocol,  # as `tunewatch serve` runs it
                forwarded_allow_ips=list(trusted_proxies),  # as `server.trusted_proxies`
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the daemon did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
