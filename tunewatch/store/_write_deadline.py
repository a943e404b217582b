"""The client-side deadlines of PostgreSQL scopes: the scoring log's writes as a whole,
and every other scope's checkout of its connection.

A write scope of the scoring log (:data:`~tunewatch.store._engine.BOUNDED_WRITE_OPTION`)
is bounded on the server by ``lock_timeout`` and ``statement_timeout``; a connection
whose peer stops answering while TCP stays open (a proxy, pgbouncer or middlebox that
stops forwarding) returns neither, and keepalives see a live peer: the group commit
waited forever, and every request behind it. Past ``lock_timeout_s`` +
:data:`WRITE_DEADLINE_MARGIN_S` one watchdog thread shuts the scope's socket down, and the
scope fails with ``DatabaseUnavailableError`` (:func:`within_deadline`).

Every other scope has that deadline on its checkout alone (:func:`checked_out_within`):
the pool's pre-ping, and the reconnect that follows a failed one. Through such a proxy
the pre-ping waited forever, so every store call did (the webhook, ``GET /v1/models``)
instead of answering 503. Their bodies have no client-side limit: a migration, a large
window read or an audit verification may rightly run longer.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from .. import _outage_log
from .._errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

#: On PostgreSQL the scoring log's write scope (pool pre-ping to commit), and every other
#: scope's checkout (pre-ping or reconnect), has a client-side deadline of the lock timeout
#: plus this: a connection that still has not answered then is shut down from this side.
#: A proxy that keeps TCP open but stops forwarding returns no server-side timeout, and
#: keepalives see a live peer: the call waited forever.
WRITE_DEADLINE_MARGIN_S = 5.0

#: What each kind of watched scope bounds, as its messages name the deadline.
_WRITE = "write"
_CHECKOUT = "checkout"


@contextmanager
def within_deadline(engine: Engine, operation: str, deadline_s: float) -> Iterator[Connection]:
    """``engine.begin()`` watched by :data:`_WATCHDOG`: past ``deadline_s`` the socket of
    the connection in use is shut down, so the call waiting on it (the pool's pre-ping,
    a statement, the commit) raises and the pool drops the connection; the failure is a
    ``DatabaseUnavailableError`` naming the deadline. The watch ends before the connection
    goes back to the pool, which may hand it to another scope at once."""
    armed = _WATCHDOG.arm(operation, deadline_s, _WRITE)
    try:
        with engine.connect() as conn:
            try:
                with conn.begin():
                    yield conn
            finally:
                _WATCHDOG.disarm(armed)
    except SQLAlchemyError as exc:
        if not armed.fired:
            raise
        raise _past_deadline(armed, exc) from exc
    finally:
        _WATCHDOG.disarm(armed)  # again: a checkout that failed never reached the first


@contextmanager
def checked_out_within(engine: Engine, operation: str, deadline_s: float) -> Iterator[Connection]:
    """``engine.begin()`` whose checkout alone (the pool's pre-ping, or a reconnect) is
    watched by :data:`_WATCHDOG`: a connection that has not answered by ``deadline_s`` is
    shut down, and the scope fails with a ``DatabaseUnavailableError`` naming the
    deadline. The watch ends once the connection is checked out: the body and its commit
    run with no client-side limit."""
    armed = _WATCHDOG.arm(operation, deadline_s, _CHECKOUT)
    try:
        conn = engine.connect()
    except SQLAlchemyError as exc:
        if not armed.fired:
            raise
        raise _past_deadline(armed, exc) from exc
    finally:
        _WATCHDOG.disarm(armed)
    with conn, conn.begin():
        yield conn


def _past_deadline(armed: _Armed, exc: SQLAlchemyError) -> DatabaseUnavailableError:
    """The failure of a scope whose deadline passed, logged at warning."""
    detail = (
        f"no answer within the client-side {armed.kind} deadline of {armed.seconds:g} s "
        f"(the lock timeout + {WRITE_DEADLINE_MARGIN_S:g} s), its connection shut down: "
        f"{getattr(exc, 'orig', None) or exc}"
    )
    _outage_log.UNAVAILABLE_STORE.warning(
        logger, "store %s: database unavailable: %s", armed.operation, detail
    )
    return DatabaseUnavailableError(f"store {armed.operation}: database unavailable: {detail}")


@dataclass(slots=True, eq=False)
class _Armed:
    """One watched scope: what it bounds (:data:`_WRITE`, :data:`_CHECKOUT`), its deadline
    (``time.monotonic``), the driver connection it uses once a cursor of it is made, and
    the thread's scope it is nested in, if any."""

    operation: str
    seconds: float
    kind: str
    deadline: float
    outer: _Armed | None = None
    connection: Any = None
    fired: bool = False


class _WriteWatchdog:
    """Ends watched scopes that outlive their deadline, from one daemon thread started by
    the first scope (no thread or timer per scope: a scope costs a lock taken twice and
    one small object).

    A scope's connection is learnt from its cursors (:func:`watched_cursor`): the pool's
    pre-ping, the first thing a frozen connection holds up, runs before any SQLAlchemy
    event names the connection. The socket is shut down, not closed: closing a libpq
    connection another thread is waiting on is unsafe, while a shutdown wakes that wait
    with an error.
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._changed = threading.Condition()
        self._armed: set[_Armed] = set()
        self._wakes_at = math.inf  # when the thread looks next (inf: when notified)
        self._thread: threading.Thread | None = None
        self._current = threading.local()  # the scope of this thread

    def arm(self, operation: str, seconds: float, kind: str) -> _Armed:
        outer: _Armed | None = getattr(self._current, "armed", None)
        armed = _Armed(operation, seconds, kind, time.monotonic() + seconds, outer)
        with self._changed:
            self._armed.add(armed)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="tunewatch-write-deadline", daemon=True
                )
                self._thread.start()
            elif armed.deadline < self._wakes_at:
                self._changed.notify()
        self._current.armed = armed
        return armed

    def disarm(self, armed: _Armed) -> None:
        if getattr(self._current, "armed", None) is armed:
            self._current.armed = armed.outer
        with self._changed:
            self._armed.discard(armed)
            armed.connection = None

    def using(self, connection: Any) -> None:
        """The thread's scope, if any, uses ``connection`` (a psycopg connection)."""
        armed: _Armed | None = getattr(self._current, "armed", None)
        if armed is None or armed.connection is connection:
            return
        with self._changed:
            if armed.fired:  # a reconnect after the deadline: the scope has failed
                _shut_down(connection)
            else:
                armed.connection = connection

    def _run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                for armed in [a for a in self._armed if a.deadline <= now]:
                    self._fire(armed)
                self._wakes_at = min((a.deadline for a in self._armed), default=math.inf)
                self._changed.wait(None if self._wakes_at == math.inf else self._wakes_at - now)

    def _fire(self, armed: _Armed) -> None:
        self._armed.discard(armed)
        armed.fired = True
        logger.warning(
            "store %s: no answer from the database within the client-side %s deadline "
            "of %g s (the lock timeout + %g s): shutting its connection down",
            armed.operation,
            armed.kind,
            armed.seconds,
            WRITE_DEADLINE_MARGIN_S,
        )
        if armed.connection is not None:
            _shut_down(armed.connection)


def _shut_down(connection: Any) -> None:
    """Shut the socket of a psycopg connection down (both ways): the call waiting on it
    fails, as on a lost connection."""
    import psycopg

    try:
        fd = connection.pgconn.socket
        with socket.socket(fileno=os.dup(fd)) as sock:  # closing the copy leaves the fd
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg.Error) as exc:  # closed or lost meanwhile: nothing waits on it
        logger.info("the connection past its deadline was already gone: %s", exc)


_WATCHDOG = _WriteWatchdog()


@functools.cache
def watched_cursor() -> type[Any]:
    """psycopg's cursor, telling :data:`_WATCHDOG` which connection the thread's watched
    scope uses (psycopg is imported only once a PostgreSQL engine connects)."""
    import psycopg

    class WatchedCursor(psycopg.Cursor[Any]):
        def __init__(self, connection: psycopg.Connection[Any], **kwargs: Any) -> None:
            super().__init__(connection, **kwargs)
            _WATCHDOG.using(connection)

    return WatchedCursor
