"""Deadlines for onnxruntime runs: a model that never finishes must not hold its thread.

A graph can loop for as long as its input says (an ONNX ``Loop`` whose trip count comes
from the features), so a model that answers a probe's row of zeros at once may never
answer a real row; run on the event loop, it stopped the whole daemon. onnxruntime
checks a run's ``RunOptions.terminate`` between nodes and loop iterations: one watchdog
thread sets it on runs past their deadline, and the run then fails with
:class:`~shadow.ShadowError` code ``run_timeout``.

Each thread has a ``RunOptions`` of its own, so stopping one run stops no other. Starting
and ending a watched run costs a dictionary entry and an uncontended lock (about a
microsecond); the watchdog, started by the first watched run, wakes every
:data:`POLL_S` seconds.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Final, Protocol


class Stoppable(Protocol):
    """What a run's options must offer: onnxruntime's ``RunOptions.terminate``."""

    terminate: bool


#: How often the watchdog looks at the runs in flight: a run is stopped at most this
#: much after its deadline.
POLL_S: Final = 0.05

_local = threading.local()
_tokens = itertools.count()
# token -> (deadline on time.monotonic(), the run's options); set and popped by the
# running threads, read by the watchdog (dict operations are atomic under the GIL)
_inflight: dict[int, tuple[float, Stoppable]] = {}
_expired: set[int] = set()
_lock = threading.Lock()
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
    """Start watching a run that uses ``options``; returns its token for :func:`end`."""
    token = next(_tokens)
    _inflight[token] = (time.monotonic() + timeout_s, options)
    if _watchdog is None:
        _start_watchdog()
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


def _start_watchdog() -> None:
    global _watchdog
    with _lock:
        if _watchdog is None:
            _watchdog = threading.Thread(target=_watch, name="onnx-run-deadline", daemon=True)
            _watchdog.start()


def _watch() -> None:
    while True:
        time.sleep(POLL_S)
        now = time.monotonic()
        for token, (deadline, options) in list(_inflight.items()):
            if now < deadline or token in _expired:
                continue
            with _lock:
                if token in _inflight:
                    _expired.add(token)
                    options.terminate = True
