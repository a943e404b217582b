"""A raw HTTP/1.1 connection to a daemon, for requests no client library sends (heads
trickled or cut short, bodies that never come), and the answers it reads back."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), self
        return json.loads(self.body)


class Conn:
    """One connection to ``127.0.0.1:port``; ``timeout`` bounds each wait on the socket
    (never an expected duration: an answer that does not come fails the test)."""

    def __init__(self, port: int, *, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.pending = b""

    def send(self, *parts: bytes) -> None:
        """Send ``parts`` in turn; stop quietly once the server has closed the connection."""
        try:
            for part in parts:
                self.sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def end(self) -> None:
        """No more bytes: the server sees the end of the stream (a head left unfinished
        is then never finished)."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except ConnectionResetError:
            return b""

    def answer(self) -> Answer:
        """The next response (an interim ``100 Continue`` included), read whole by its
        Content-Length."""
        while b"\r\n\r\n" not in self.pending:
            chunk = self._recv()
            assert chunk, f"closed without an answer; received {self.pending[:200]!r}"
            self.pending += chunk
        head, _, rest = self.pending.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
        if status_line.startswith("HTTP/1.1 100"):
            self.pending = rest
            return Answer(100, headers, b"")
        length = int(headers["content-length"])
        while len(rest) < length:
            chunk = self._recv()
            assert chunk, f"closed within a body; received {rest[:200]!r}"
            rest += chunk
        self.pending = rest[length:]
        return Answer(int(status_line.split()[1]), headers, rest[:length])

    def closed_by_server(self) -> bool:
        return self.pending == b"" and self._recv() == b""

    def close(self) -> None:
        self.sock.close()
