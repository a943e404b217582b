"""A TCP proxy on a loopback port, for tests of a database that goes out of reach: a
connection through it is cut as a network partition or an outage would cut it."""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    """A TCP proxy on a loopback port to ``target``; :meth:`close` is the outage (or the
    partition): it stops listening and cuts every connection it carried.

    A connection's sockets are cut by ``shutdown`` and closed only by the last of its two
    pipe threads, once neither uses them: closed under a pipe thread about to ``recv``,
    a socket's file descriptor number was taken by the next connection opened (the proxy
    opened again on the same port), whose replies that thread then read and dropped, and
    a client waited for its answer for ever (a test hung 8 minutes in CI)."""

    def __init__(self, target: tuple[str, int], *, port: int = 0) -> None:
        """``port``: the loopback port to listen on (one chosen when 0); a closed proxy's
        port gives the database back where its clients look for it."""
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port: int = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed: the outage
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, upstream]
            ended = _Ended()
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b, ended), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, ended: _Ended) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass  # the other side was cut
        finally:
            for s in (source, sink):  # wakes the other pipe thread, which ends too
                _shut(s)
            if ended.last():
                source.close()
                sink.close()

    def close(self) -> None:
        _shut(self.listener)  # wakes the accept() blocked in another thread
        self.listener.close()
        with self.lock:
            for s in self.sockets:
                _shut(s)  # its pipe threads end, and the last closes it


class _Ended:
    """How many of a connection's two pipe threads have ended."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    def last(self) -> bool:
        """Count one more ended; whether it is the second."""
        with self._lock:
            self._count += 1
            return self._count == 2


def _shut(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected, or cut already
