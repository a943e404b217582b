"""WAL checkpoints off the write path.

SQLite's automatic checkpoint runs inside the ``COMMIT`` that pushes the WAL past 1,000
pages: the committing thread copies the WAL into the database and syncs it while every
request waiting on that commit waits too (champion p99 at saturation 5.0–5.7 ms with it,
3.6–4.8 ms with this thread instead, ``bench/scoring.py``). A store therefore turns it
off and runs this thread instead:

* every ``interval_s`` a ``PASSIVE`` checkpoint copies what the WAL holds, concurrently
  with the writer (it takes no writer lock);
* a WAL is rewound only when a writer finds it wholly checkpointed, which under steady
  writes never happens, so once the WAL holds ``restart_pages`` a ``RESTART`` checkpoint
  takes the writer lock for what little the passive one left over and rewinds it. Its
  busy timeout is short (``busy_timeout_ms``): a writer that keeps the lock makes it give
  up until the next round rather than hold the writer back — until the WAL holds four
  times ``restart_pages``; from then on it waits up to a second, so the WAL stays bounded
  however busy the writer is. A reader that holds the WAL back (the passive checkpoint
  could not copy all of it) would keep a RESTART waiting on the writer lock for nothing,
  each round: none is tried until the passive checkpoint catches up.

A rewound WAL is written again from its start but SQLite never shrinks the file: one a
long reader grew (a ``tunewatch backup`` under load: 24 MiB before it, 111 MiB after)
kept that size until the daemon stopped. Every store connection therefore sets
``journal_size_limit`` to :data:`WAL_LIMIT_PAGES` pages (:func:`~._engine.make_engine`),
and the first commit after a rewind cuts the file back to it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from shadow import use_batch_scheduling

from .._outage_log import OutageLog

logger = logging.getLogger(__name__)

_PATIENT_TIMEOUT_MS = 1000

#: A store's checkpointer's ``restart_pages``.
RESTART_PAGES = 4096

#: The pages a rewound WAL keeps (``PRAGMA journal_size_limit``, in bytes on every store
#: connection). Without a reader holding it back the WAL peaks at about ``RESTART_PAGES``
#: and what a round's interval adds (24 MiB under load, 1.5x), so this leaves the file
#: its usual size and gives back only what a long read or a writer that kept the RESTART
#: waiting grew it by.
WAL_LIMIT_PAGES = 2 * RESTART_PAGES


@dataclass(frozen=True, slots=True)
class CheckpointResult:
    """What ``PRAGMA wal_checkpoint`` reported: pages in the WAL and pages copied."""

    mode: str
    busy: bool
    log_pages: int
    checkpointed_pages: int


class WalCheckpointer:
    """Checkpoints one SQLite database file from a daemon thread with its own connection."""

    def __init__(
        self,
        path: str,
        *,
        interval_s: float = 0.5,
        restart_pages: int = RESTART_PAGES,
        busy_timeout_ms: int = 10,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"`interval_s` must be > 0, got {interval_s}")
        if restart_pages < 1:
            raise ValueError(f"`restart_pages` must be >= 1, got {restart_pages}")
        self._path = path
        self._interval_s = interval_s
        self._restart_pages = restart_pages
        self._busy_timeout_ms = busy_timeout_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        what, retry = f"WAL checkpoint of {path}", f"tried again every {interval_s:g} s"
        # SQLite's errors (a full disk): the message once while they last, then a
        # "recovered" line; each round logged its own, twice a second onto the full disk.
        self._outage = OutageLog(
            logger, what=what, retry=retry, now=lambda: datetime.now(UTC), traceback=False
        )
        self._faults = OutageLog(  # anything else: a bug or a ``MemoryError``
            logger, what=what, retry=retry, now=lambda: datetime.now(UTC), level=logging.ERROR
        )

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="tunewatch-wal-checkpoint", daemon=True
            )
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout)
            if self._thread.is_alive():
                return  # still checkpointing: its own exit closes the connection
            self._thread = None
        if self._conn is not None:  # rounds run by hand (``checkpoint()``)
            self._conn.close()
            self._conn = None

    def checkpoint(self) -> list[CheckpointResult]:
        """One round: a passive checkpoint, and a restart when the WAL has grown past
        ``restart_pages``. SQLite's errors are logged and the round is skipped, a run of
        them once (:class:`OutageLog`); so is a round before the database file exists (the
        checkpointer never creates it)."""
        if self._conn is None and not os.path.exists(self._path):
            return []
        try:
            conn = self._connection()
            results = [_checkpoint(conn, "PASSIVE")]
            log_pages = results[0].log_pages
            # A passive checkpoint that could not copy the whole WAL was held back by a
            # reader, which a RESTART must wait for too, holding the writer lock all the
            # while: it is tried once the passive one has caught up.
            caught_up = results[0].checkpointed_pages >= log_pages
            if caught_up and log_pages >= self._restart_pages:
                patient = log_pages >= 4 * self._restart_pages
                if patient:
                    conn.execute(f"PRAGMA busy_timeout={_PATIENT_TIMEOUT_MS}")
                try:
                    results.append(_checkpoint(conn, "RESTART"))
                finally:
                    if patient:
                        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        except sqlite3.Error as exc:
            self._outage.failed(exc)  # the message once, repeats at debug
            return []
        self._outage.succeeded()
        return results

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
            self._conn = conn
        return self._conn

    def _run(self) -> None:
        use_batch_scheduling()
        try:
            while not self._stop.wait(self._interval_s):
                self._round()
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _round(self) -> None:
        """One round of the thread, its boundary: the store turned SQLite's own
        checkpoints off, so a thread ended by an error (a ``MemoryError``) left the WAL
        growing without bound, unseen. The error is logged with its traceback and the
        next round goes on (logged once while it lasts: :class:`OutageLog`)."""
        try:
            self.checkpoint()
        except Exception as exc:
            self._faults.failed(exc)  # once with its traceback, repeats at debug
        else:
            self._faults.succeeded()


def _checkpoint(conn: sqlite3.Connection, mode: str) -> CheckpointResult:
    busy, log, done = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return CheckpointResult(
        mode=mode, busy=bool(busy), log_pages=int(log), checkpointed_pages=int(done)
    )
