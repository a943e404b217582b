"""A loopback TCP forwarder in front of the test PostgreSQL that can stop forwarding
while every connection stays open: a proxy, pgbouncer or middlebox that hangs with TCP
open (its kernel still acknowledges what is sent, so keepalives see a live peer)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from types import TracebackType

from sqlalchemy import make_url

#: How long a frozen pump waits before it checks whether the proxy closed.
_POLL_S = 0.2


class FreezableProxy:
    """Forwards 127.0.0.1:<port> to ``upstream`` until :meth:`freeze`; :meth:`thaw`
    forwards again (what arrived meanwhile is then delivered). Use as a context manager:
    leaving it thaws, then closes every socket."""

    def __init__(self, upstream: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self._upstream = upstream
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._spawn(self._accept)

    def url(self, pg_url: str) -> str:
        """``pg_url`` (a test schema's URL) pointed at this proxy."""
        return make_url(pg_url).set(host="127.0.0.1", port=self.port).render_as_string(False)

    def freeze(self) -> None:
        self._forwarding.clear()

    def thaw(self) -> None:
        self._forwarding.set()

    def __enter__(self) -> FreezableProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed.set()
        self.thaw()
        _shut(self._listener)  # wakes the accept thread; close() alone leaves it blocked
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                _shut(sock)
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:  # the listener closed
                return
            try:
                server = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
                self._spawn(self._pump, client, server)
                self._spawn(self._pump, server, client)

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            while not self._forwarding.wait(_POLL_S):  # frozen: hold what arrived
                if self._closed.is_set():
                    return
            if not data or self._closed.is_set():
                _shut(target)
                return
            try:
                target.sendall(data)
            except OSError:
                _shut(source)
                return


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already shut or never connected
        return
