"""Whether a SQLite store's path still names the file the store opened.

SQLite writes to the file it opened, whatever became of its name: with the data
directory removed (``rm -rf``) or another database renamed over ``tunewatch.db``, every
commit succeeded into an unlinked file (``/proc/<pid>/fd``: ``tunewatch.db (deleted)``),
each request was acknowledged and readiness said ok, and the records were lost at the
next start. The engine records the file's ``(st_dev, st_ino)`` when it is made
(:func:`~._engine.make_engine`) and each transaction checks it before its ``COMMIT``
(one ``os.stat``: ~3-6 µs, of a group commit's 100-400 µs): when the path is gone or names
another file, the transaction is rolled back and fails with
:class:`~tunewatch._errors.DatabaseUnavailableError` (a daemon answers 503 ``store_unavailable``,
and its readiness ping fails the same way). Logged as an error once per outage — when
the file is first found gone, and again only after it was found back (moved back to its
path) — not once per request.
"""

from __future__ import annotations

import logging
import os
import threading

from .._errors import DatabaseUnavailableError, os_reason

logger = logging.getLogger(__name__)

#: ``(path, st_dev, st_ino)`` of the opened files found gone, and not found back since:
#: each is logged when it is added, whichever engine (a store has two) found it.
_LOST: set[tuple[str, int, int]] = set()
_LOST_LOCK = threading.Lock()

REPLACED = "was removed or replaced since it was opened; restart the daemon"


class FileIdentity:
    """The device and inode of SQLite database file ``path`` when it was opened."""

    __slots__ = ("_key", "path")

    def __init__(self, path: str) -> None:
        """Raises ``OSError`` when ``path`` cannot be ``stat``-ed."""
        stat = os.stat(path)
        self.path = path
        self._key = (path, stat.st_dev, stat.st_ino)

    def check(self, operation: str) -> None:
        """Return when ``path`` still names the file opened; else raise
        ``DatabaseUnavailableError`` naming the path (logged once per outage)."""
        try:
            stat = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            problem = f"store file {self.path} {REPLACED}"
        except OSError as exc:  # cannot tell: not acknowledged as durable
            problem = f"store file {self.path} cannot be checked: {os_reason(exc)}"
        else:
            if (stat.st_dev, stat.st_ino) == self._key[1:]:
                if self._key in _LOST:
                    self._found_back()
                return
            problem = f"store file {self.path} {REPLACED}"
        self._lost(problem)
        raise DatabaseUnavailableError(f"store {operation}: {problem}")

    def _lost(self, problem: str) -> None:
        with _LOST_LOCK:
            if self._key in _LOST:
                return
            _LOST.add(self._key)
        logger.error(
            "%s: nothing is committed (requests are answered 503 store_unavailable, the "
            "daemon is not ready) until the file is back at its path or the daemon restarts",
            problem,
        )

    def _found_back(self) -> None:
        with _LOST_LOCK:
            if self._key not in _LOST:
                return
            _LOST.discard(self._key)
        logger.info("store file %s is the one opened again: committing", self.path)
