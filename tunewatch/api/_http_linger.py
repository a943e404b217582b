"""A lingering close: a connection closed with a request still arriving keeps its answer.

A request answered before its body arrived (413 by its Content-Length, 401 without a
token) on a connection to be closed — the client sent ``Connection: close``, as Python's
urllib does, or the answer asked for it — was closed at once, with the body still coming.
The kernel answers bytes to a closed socket with a reset, and a reset destroys what the
client has not read yet: a client that sends its whole body before it reads (http.client,
urllib) saw ``ConnectionResetError`` or ``BrokenPipeError``, never the answer. So did one
whose head, past the limit, was answered 431 while it still arrived.

Such a connection is instead half-closed once its answer is written (the client reads
the answer, then the end of the stream), and the rest of the request read and dropped
until it ends (its body's declared length or last chunk), the client closes, the
request's read timeout is up, or :data:`LINGER_MAX_BYTES` were dropped — whichever comes
first — and then closed. So do Apache and nginx (``lingering_close``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

LINGER_MAX_BYTES: Final = 1 << 30
"""The most bytes read and dropped after an answer before the connection is closed
anyway: room for a body well past any limit of ours, so that its sender still reads the
answer, while an endless fast sender costs the event loop a bounded amount of reading
(an endless slow one is cut off by the read timeout)."""


class LingeringTransport(asyncio.Transport):
    """A connection's ``transport`` as its requests' cycles see it, and its lingering.

    A cycle's :meth:`close` lingers when ``wanted()`` says a request is still arriving
    (it is called once, at the close); otherwise, or once lingering, it closes. While
    lingering the transport is closing to the cycles, so none writes to it."""

    def __init__(self, transport: asyncio.Transport, *, wanted: Callable[[], bool]) -> None:
        super().__init__()
        self.transport = transport
        self._wanted = wanted
        self.lingering = False
        self._dropped = 0

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        self.transport.write(data)

    def is_closing(self) -> bool:
        return self.lingering or self.transport.is_closing()

    def close(self) -> None:
        if self.lingering or self.transport.is_closing() or not self._wanted():
            self.transport.close()
        else:
            self.linger()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)

    def linger(self) -> None:
        """Half-close: what was written goes out, then the end of the stream; reading
        goes on (the caller drops what it reads, passing its size to :meth:`dropping`,
        and closes the transport when the request ends or its time is up)."""
        self.lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()

    def dropping(self, size: int) -> bool:
        """Count ``size`` bytes read while lingering; past :data:`LINGER_MAX_BYTES`, close.
        Whether the connection still lingers."""
        self._dropped += size
        if self._dropped > LINGER_MAX_BYTES:
            self.transport.close()
            return False
        return True
