"""How a loop that retries a failing call logs an outage: once, not every turn."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta


class OutageLog:
    """Logs a run of failures of one retried call (the database restarting for minutes
    under a loop that turns every few seconds): one warning with the traceback when the
    run starts and one for each other exception type it brings, repeats at debug, one
    info line when the call succeeds again. Not a traceback every turn.

    ``what`` names the call ("refreshing lineups from the store"), ``retry`` says what
    the loop does meanwhile; ``now`` times the outage."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        what: str,
        retry: str,
        now: Callable[[], datetime],
    ) -> None:
        self._logger = logger
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
        self._logger.warning(
            "%s failed; %s (repeats of this failure are logged at debug until it succeeds)",
            self._what,
            self._retry,
            exc_info=exc,
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
