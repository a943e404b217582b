"""How an outage is logged: once, not at every failure — by a loop that retries a failing
call (:class:`OutageLog`), and by the many callers failing on one condition
(:class:`ThrottledWarnings`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta


class OutageLog:
    """Logs a run of failures of one retried call (the database restarting for minutes
    under a loop that turns every few seconds): one warning with the traceback when the
    run starts and one for each other exception type it brings, repeats at debug, one
    info line when the call succeeds again. Not a traceback every turn.

    ``what`` names the call ("refreshing lineups from the store"), ``retry`` says what
    the loop does meanwhile; ``now`` times the outage; ``traceback=False`` logs the
    error's message alone (an expected condition, as a store outage to the recorder);
    ``level``: the first lines' (``ERROR`` for a loop's unexpected faults, a bug or a
    ``MemoryError``, rather than an outage)."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        what: str,
        retry: str,
        now: Callable[[], datetime],
        traceback: bool = True,
        level: int = logging.WARNING,
    ) -> None:
        self._logger = logger
        self._traceback = traceback
        self._level = level
        self._what = what
        self._retry = retry
        self._now = now
        self._failures = 0
        self._since: datetime | None = None  # None: the call succeeds
        self._kinds: set[type[BaseException]] = set()

    def failed(self, exc: BaseException) -> None:
        if self._since is None:
            self._since = self._now()
        self._failures += 1
        if type(exc) in self._kinds:
            self._logger.debug("%s failed again (%d in a row): %s", self._what, self._failures, exc)
            return
        self._kinds.add(type(exc))
        if self._traceback:
            self._logger.log(
                self._level,
                "%s failed; %s (repeats of this failure are logged at debug until it succeeds)",
                self._what,
                self._retry,
                exc_info=exc,
            )
            return
        self._logger.log(
            self._level,
            "%s failed: %s; %s (repeats of this failure are logged at debug until it succeeds)",
            self._what,
            exc,
            self._retry,
        )

    def succeeded(self) -> None:
        if self._since is None:
            return
        lasted = max(self._now() - self._since, timedelta(0))
        self._logger.info(
            "%s recovered after %d failures / %.0f s",
            self._what,
            self._failures,
            lasted.total_seconds(),
        )
        self._since = None
        self._failures = 0
        self._kinds.clear()


class ThrottledWarnings:
    """A warning many callers log for one condition — each operation failing on a
    database that is down — logged the first time, then at most once in ``every_s``,
    saying how many were not logged since. Thread-safe.

    Each failed operation logged its own: under load a 60 s PostgreSQL outage wrote 223
    in its first second, then one a second per token look-up and readiness probe."""

    def __init__(
        self, *, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._every_s = every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._logged_at: float | None = None
        self._unlogged = 0

    def warning(self, logger: logging.Logger, msg: str, *args: object) -> None:
        with self._lock:
            now = self._clock()
            if self._logged_at is not None and now - self._logged_at < self._every_s:
                self._unlogged += 1
                return
            unlogged, self._unlogged, self._logged_at = self._unlogged, 0, now
        if unlogged:
            msg += " (%d more since the last one logged; logged at most once in %g s)"
            args = (*args, unlogged, self._every_s)
        logger.warning(msg, *args)


#: The store's "database unavailable" warnings, from every operation of the process.
UNAVAILABLE_STORE = ThrottledWarnings()
