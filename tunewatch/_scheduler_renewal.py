"""The scheduler lease's renewals, on a thread of their own, and the wall clock's steps.

:class:`Renewals` renews the lease every third of its life on a dedicated thread that
waits on a ``threading.Event`` (timed by the monotonic clock), not as an APScheduler job:
APScheduler times its jobs by the wall clock (``datetime.now()``), and stepped back an
hour (NTP correcting a clock an hour fast) it ran neither the renewal nor any job for
that hour. The lease lapsed in the store while the process still said it led, a
follower never tried to take the lease, and a second leader's figures were read beside
the stepped one's.

At each renewal the monotonic time since the last one is compared with the wall clock's,
as APScheduler reads it (:func:`aps_wall_clock`): a difference past
``STEP_TOLERANCE_S`` is a step, which the scheduler is told of (it logs it and moves its
jobs' next runs with it: :meth:`tunewatch._scheduler.Scheduler._stepped`) before it
renews. A renewal that takes longer than the time between renewals is logged, at most
once in ``SLOW_LOG_EVERY_S``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import apscheduler.schedulers.base as _aps_base

from tunewatch._outage_log import ThrottledWarnings

# The scheduler's logger, not this module's: its operators (and its tests) filter on it.
logger = logging.getLogger("tunewatch._scheduler")

#: A difference between the monotonic and the wall clock's time since the last renewal
#: past this is a step of the wall clock (NTP slews by at most 0.5 ms a second).
STEP_TOLERANCE_S = 1.0
#: At most one warning in this long about renewals slower than the time between them.
SLOW_LOG_EVERY_S = 300.0


def aps_wall_clock() -> datetime:
    """The wall clock APScheduler times its jobs by: ``datetime.now`` as its scheduler
    module reads it, the clock whose step holds its jobs back."""
    now: datetime = _aps_base.datetime.now(UTC)
    return now


class Renewals:
    """Calls ``renew`` every ``interval_s`` seconds on a thread of its own (``name``),
    from :meth:`start` until :meth:`stop`; first ``on_step(step_s)`` when the wall clock
    ``wall`` moved ``step_s`` seconds more (or, negative, less) than the monotonic clock
    since the last renewal. An exception from either is logged and the next renewal
    comes at its time: the thread never ends before :meth:`stop`."""

    def __init__(
        self,
        *,
        renew: Callable[[], None],
        interval_s: float,
        on_step: Callable[[float], None],
        name: str = "tunewatch-scheduler-lease",
        wall: Callable[[], datetime] = aps_wall_clock,
    ) -> None:
        self._renew = renew
        self._interval_s = interval_s
        self._on_step = on_step
        self._wall = wall
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._slow = ThrottledWarnings(every_s=SLOW_LOG_EVERY_S)

    def start(self) -> None:
        # a daemon thread: a renewal hanging in the store does not hold the process's
        # exit (shutdown waits for it until its grace, then lets it release the lease)
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def stop(self) -> None:
        """No renewal starts from now on (one under way finishes)."""
        self._stop.set()

    def join(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the thread to end (after :meth:`stop`)."""
        if self._thread is not None:
            self._thread.join(max(0.0, timeout_s))

    def _run(self) -> None:
        mono, wall = time.monotonic(), self._wall()
        while not self._stop.wait(self._interval_s):
            now_mono, now_wall = time.monotonic(), self._wall()
            step = (now_wall - wall).total_seconds() - (now_mono - mono)
            mono, wall = now_mono, now_wall
            if abs(step) > STEP_TOLERANCE_S:
                try:
                    self._on_step(step)
                except Exception:  # the thread's boundary: log, renew all the same
                    logger.exception("could not reschedule the jobs after a wall-clock step")
            try:
                self._renew()
            except Exception:  # the thread's boundary: log, and renew at the next tick
                logger.exception(
                    "scheduler lease renewal failed; retrying in %.1f s", self._interval_s
                )
            took = time.monotonic() - now_mono
            if took > self._interval_s:
                self._slow.warning(
                    logger,
                    "scheduler lease renewal took %.1f s, more than the %.1f s between "
                    "renewals: the lease may run out before the next one",
                    took,
                    self._interval_s,
                )
