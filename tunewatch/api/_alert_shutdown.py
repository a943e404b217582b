"""The Alertmanager webhook's part in a stop (SIGTERM).

uvicorn gives the requests in flight a grace (``request_grace_s``: one commit's lock wait
and write deadline, and 5 s), then cancels them: a bare text/plain 500. A delivery is
decided alert by alert, each alert committed on its own, and a large group takes minutes:
cancelled, it was answered that 500, and the episode it was deciding was left claimed
(every other replica answered 503 ``alert_busy`` for it until the claim timed out, a
minute later). ``tunewatch serve`` begins the webhook's stop as it begins its shutdown
(:meth:`WebhookStop.begin`, beside the recorder's): a delivery being decided goes on
until the grace has only one commit's lock wait and write deadline and
:data:`~tunewatch._recorder.ANSWER_MARGIN_S` left (4 s from SIGTERM by default), then
stops between two alerts, its claims settled or released, and is answered 503
:data:`SHUTTING_DOWN_CODE` with ``Retry-After``: Alertmanager retries the group, and the
alerts decided before the stop are one read each then. A delivery still waiting for one
of the webhook's threads is not started: it is answered so at once, as is one that comes
later. An alert whose decision is running at the deadline ends by its own commits (on a
store answering normally, milliseconds).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from anyio import CancelScope

from tunewatch._recorder import ANSWER_MARGIN_S
from tunewatch.api._errors import ApiError

logger = logging.getLogger(__name__)

#: The code of a delivery answered 503 because the daemon is stopping.
SHUTTING_DOWN_CODE = "shutting_down"


class ShuttingDown(ApiError):
    """The daemon is stopping: a delivery not decided by then is refused, for its retry."""

    def __init__(self) -> None:
        super().__init__(
            503,
            SHUTTING_DOWN_CODE,
            "the daemon is shutting down: this delivery was not decided (or not whole); "
            "retry it (Alertmanager retries a 5xx)",
        )


class WebhookStop:
    """The webhook's stop: unset until :meth:`begin`. ``monotonic`` times its deadline.
    Any thread may begin it or read it."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        # Once the stop began: the last moment a delivery may start deciding an alert.
        self._decide_by: float | None = None
        # The deliveries in progress on an event loop (waiting for a thread, or in one),
        # each with its loop: cancelled as the stop begins, which ends only the waits.
        self._in_progress: dict[CancelScope, asyncio.AbstractEventLoop] = {}

    def begin(self, *, grace_s: float, commit_s: float) -> None:
        """Shutdown began: the requests in flight get ``grace_s`` from now to be answered,
        and a commit may take up to ``commit_s`` (the store's lock timeout and its write
        deadline's margin). Deliveries decide no alert ``grace_s - commit_s -``
        :data:`ANSWER_MARGIN_S` from now on, and those waiting for a thread are answered
        at once."""
        decide_by = self._monotonic() + grace_s - commit_s - ANSWER_MARGIN_S
        with self._lock:
            if self._decide_by is None or decide_by < self._decide_by:
                self._decide_by = decide_by
            in_progress = list(self._in_progress.items())
        logger.info(
            "shutting down: the %d Alertmanager deliveries in progress stop deciding alerts "
            "within %.1f s, those waiting for a thread at once (503 %s, for Alertmanager's "
            "retry)",
            len(in_progress),
            max(0.0, grace_s - commit_s - ANSWER_MARGIN_S),
            SHUTTING_DOWN_CODE,
        )
        for scope, loop in in_progress:
            loop.call_soon_threadsafe(scope.cancel)

    def over(self) -> bool:
        """Whether the time to decide alerts is over: checked between two alerts of a
        delivery, in its worker thread."""
        decide_by = self._decide_by
        return decide_by is not None and self._monotonic() >= decide_by

    @contextmanager
    def waiting(self) -> Iterator[CancelScope]:
        """A scope for a delivery to wait for a webhook thread in, and be decided in,
        cancelled as the stop begins (at once when it has): a delivery still waiting is
        then answered, not started; one in a thread is not cut off (the thread's work is
        shielded), and stops between two alerts by :meth:`over`. Enter it on the app's
        event loop."""
        loop = asyncio.get_running_loop()
        with CancelScope() as scope:
            with self._lock:
                if self._decide_by is not None:
                    scope.cancel()
                self._in_progress[scope] = loop
            try:
                yield scope
            finally:
                with self._lock:
                    del self._in_progress[scope]
