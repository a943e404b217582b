"""A TCP proxy on a loopback port, for tests of a database that goes out of reach: a
connection through it is cut as a network partition or an outage would cut it."""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    """A TCP proxy on a loopback port to ``target``; :meth:`close` is the outage (or the
    partition): it stops listening and cuts every connection it carried."""

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
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass  # the other side was cut
        finally:
            for s in (source, sink):
                s.close()

    def close(self) -> None:
        try:  # wakes the accept() blocked in another thread, which close() alone does not
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # closed already
        self.listener.close()
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed by its pipe
                s.close()
