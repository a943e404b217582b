"""Deadlines for onnxruntime runs: a model that never finishes must not hold its thread.

A graph can loop for as long as its input says (an ONNX ``Loop`` whose trip count comes
from the features), so a model that answers a probe's row of zeros at once may never
answer a real row; run on the event loop, it stopped the whole daemon. onnxruntime
checks a run's ``RunOptions.terminate`` between nodes and loop iterations: one watchdog
thread sets it on runs past their deadline, and the run then fails with
:class:`~shadow.ShadowError` code ``run_timeout``.

Each thread has a ``RunOptions`` of its own, so stopping one run stops no other. Starting
and ending a watched run costs a dictionary entry and an uncontended lock (under a
microsecond). The watchdog, started by the first watched run, sleeps until the earliest
deadline in flight, and with no timeout while nothing is: it polled every 50 ms, from the
first scored request on, for good (a fifth of an idle daemon's CPU). A run wakes it only
when its deadline comes before the one it sleeps until (nothing in flight, or a shorter
timeout than the runs before); a run ending never does, so the watchdog wakes once more at
the deadline of the last run that ended, finds nothing, and sleeps.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Final, Protocol


class Stoppable(Protocol):
    """What a run's options must offer: onnxruntime's ``RunOptions.terminate``."""

    terminate: bool


_local = threading.local()
_tokens = itertools.count()
# token -> (deadline on time.monotonic(), the run's options); set by the running threads
# with no lock (dict operations are atomic under the GIL), popped by them and read by the
# watchdog under _lock
_inflight: dict[int, tuple[float, Stoppable]] = {}
_expired: set[int] = set()
_lock = threading.Lock()  # taken bare by end(): a Condition's own `with` costs more
_changed = threading.Condition(_lock)
# the deadline the watchdog sleeps until: inf while it sleeps with no timeout, while it
# looks at the runs in flight, and before it starts; a run with an earlier one wakes it
_wakes_at = math.inf
_watchdog: threading.Thread | None = None


def thread_options(make: Callable[[], Stoppable]) -> Stoppable:
    """This thread's run options (made by ``make`` on its first run), ``terminate``
    cleared. The caller (:mod:`shadow._onnx`) passes onnxruntime's ``RunOptions``: this
    module imports no onnxruntime."""
    options: Stoppable | None = getattr(_local, "options", None)
    if options is None:
        options = _local.options = make()
    return options


def watch(options: Stoppable, timeout_s: float) -> int:
    """Start watching a run that uses ``options``; returns its token for :func:`end`.

    The run is in :data:`_inflight` before :data:`_wakes_at` is read: a watchdog that
    listed the runs without it has set ``_wakes_at`` by then (to ``inf`` while it looks,
    then to the earliest deadline it found), so the run either wakes it or comes due no
    sooner than its wake-up."""
    token = next(_tokens)
    deadline = time.monotonic() + timeout_s
    _inflight[token] = (deadline, options)
    if deadline < _wakes_at:  # the watchdog would look too late, or never
        _wake_watchdog()
    return token


def end(token: int, options: Stoppable | None) -> bool:
    """Stop watching the run; returns whether its deadline passed (it was stopped).
    Clears ``terminate`` for the thread's next run. Under the watchdog's lock: one that
    found the run in flight just before it ended sets ``terminate`` before this reads it,
    not after (the thread's next run would have been stopped at once)."""
    with _lock:
        _inflight.pop(token, None)
        if token not in _expired:
            return False
        _expired.discard(token)
        if options is not None:
            options.terminate = False
        return True


def _after_fork_in_child() -> None:
    """A forked child has only the forking thread: no watchdog, and maybe a lock some
    other thread held. Start afresh; the child's first watched run starts a watchdog."""
    global _watchdog, _lock, _changed, _wakes_at
    _watchdog = None
    _lock = threading.Lock()
    _changed = threading.Condition(_lock)
    _wakes_at = math.inf
    _inflight.clear()
    _expired.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _wake_watchdog() -> None:
    """Start the watchdog, or have it look at the runs in flight again. Under the lock it
    holds while it looks, so the notice reaches it waiting, not looking."""
    global _watchdog
    with _changed:
        if _watchdog is None:
            _watchdog = threading.Thread(target=_watch, name="onnx-run-deadline", daemon=True)
            _watchdog.start()
        else:
            _changed.notify()


def _watch() -> None:
    """Stop the runs past their deadline, then sleep until the next deadline in flight
    (with no timeout if there is none) or until a run with an earlier one starts. Runs
    already stopped wait only for their :func:`end`."""
    global _wakes_at
    with _changed:
        while True:
            _wakes_at = math.inf  # before listing: a run started meanwhile notifies
            now = time.monotonic()
            earliest = math.inf
            for token, (deadline, options) in list(_inflight.items()):
                if token in _expired:
                    continue
                if deadline <= now:
                    _expired.add(token)
                    options.terminate = True
                elif deadline < earliest:
                    earliest = deadline
            _wakes_at = earliest
            _changed.wait(None if earliest == math.inf else earliest - now)


class RunBreaker:
    """Refuses a model's runs for a while after several in a row passed their deadline.

    A deadline stops one run, but a model that loops on every real row still holds its
    caller for the whole deadline on each: a champion scored on the event loop stalled
    the daemon ``run_timeout_s`` per request. After :attr:`TRIP_AFTER` consecutive
    timeouts the breaker opens: runs are refused at once for a pause that starts at
    ``pause_s`` and doubles (up to ``max_pause_s``) each time the one run let through
    after a pause times out again. Any run that finishes closes it. One slow batch among
    quick ones never opens it.

    Changes hold a lock (a run finishing between another's count and its opening left
    the breaker open with no timeout counted); the check before each run reads one
    attribute, so two threads racing past an ending pause may both try a run, which
    costs one more deadline, never a wrong answer.
    """

    TRIP_AFTER: Final = 3

    __slots__ = (
        "_clock",
        "_lock",
        "_max_pause_s",
        "_pause_s",
        "consecutive",
        "open_until",
        "pause_s",
    )

    def __init__(
        self,
        *,
        pause_s: float = 30.0,
        max_pause_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < pause_s <= max_pause_s:
            raise ValueError(f"`pause_s` must be in (0, max_pause_s={max_pause_s}], got {pause_s}")
        self._pause_s = pause_s
        self._max_pause_s = max_pause_s
        self._clock = clock
        self._lock = threading.Lock()
        #: Timeouts since the last run that finished.
        self.consecutive = 0
        #: The pause the next opening lasts.
        self.pause_s = pause_s
        #: Until when (on ``clock``) runs are refused; 0 while closed.
        self.open_until = 0.0

    def refusing_for(self) -> float:
        """Seconds the breaker still refuses runs; 0 when a run may go."""
        if not self.open_until:  # the hot path: one attribute read
            return 0.0
        return max(0.0, self.open_until - self._clock())

    def finished(self) -> None:
        """A run finished (well or with an error of its own): close the breaker."""
        if self.consecutive or self.open_until:  # the hot path: nothing to reset
            with self._lock:
                self.consecutive = 0
                self.pause_s = self._pause_s
                self.open_until = 0.0

    def timed_out(self) -> bool:
        """A run passed its deadline; returns whether the breaker opened."""
        with self._lock:
            self.consecutive += 1
            if self.consecutive < self.TRIP_AFTER:
                return False
            self.open_until = self._clock() + self.pause_s
            self.pause_s = min(self.pause_s * 2, self._max_pause_s)
            return True
