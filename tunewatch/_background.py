"""uvicorn in a background thread on a loopback port: for the demo, tests and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
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


class _PromptServer(uvicorn.Server):
    """uvicorn's server, stopping as soon as :meth:`request_exit` is called. uvicorn looks
    at ``should_exit`` every 0.1 s, then waits another 0.1 s for the connections it asked
    to close: 0.2 s per stop, even with no connection open. Each test that serves a daemon
    stops one (over a thousand a run). A server with connections or requests open still
    stops as uvicorn stops it."""

    _loop: asyncio.AbstractEventLoop | None = None
    _wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):  # uvicorn's tick: every 10th, a new Date
                await asyncio.wait_for(self._wake.wait(), 0.1)
            should_exit = await self.on_tick(counter)

    def request_exit(self) -> None:
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: the server has stopped
                loop.call_soon_threadsafe(wake.set)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        state = self.server_state
        if state.connections or state.tasks or sockets or self.force_exit:
            await super().shutdown(sockets)
            return
        # no connection or request to wait for: what uvicorn's shutdown does, without a sleep
        for server in self.servers:
            server.close()
        for server in self.servers:
            await server.wait_closed()
        await self.lifespan.shutdown()


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
        self.server = _PromptServer(
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
        self.server.request_exit()
        self.thread.join(30)
