"""A tuning worker's SIGTERM handler run again inside its own ``stop.set()``: a second
SIGTERM of a burst (the kernel's parent-death signal, sent as each of a killed daemon's
threads dies) came while the first one's handler held the event's lock, and the worker
waited for that lock for ever, neither tuning nor stopping. Seen in CI: the worker of
tests/tunewatch/test_worker_ends_with_its_daemon.py outlived its daemon by 120 s, its
main thread three handlers deep in ``Event.set``."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from tunewatch._signal_safe_set import signal_safe_setter

#: A bound against the hang, not a duration: the child returns in well under a second.
HANG_S = 60

#: The worker's handler installed as ``tunewatch worker`` installs it, then run where the
#: second signal of a burst finds it: inside ``stop.set()``, the event's lock held.
_CHILD = """
import signal, threading
from tunewatch._commands._tuning import stop_on_sigterm
stop = threading.Event()
stop_on_sigterm(stop)
with stop._cond:  # what Event.set holds while it sets the flag
    signal.raise_signal(signal.SIGTERM)
print("handled", flush=True)
print("set" if stop.wait(30) else "not set", flush=True)
"""


def test_a_sigterm_handled_inside_the_worker_s_own_stop_set_returns_and_stops_it() -> None:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=HANG_S
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the SIGTERM handler waited on the stop event's own lock ({exc})")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["handled", "set"]


def test_the_setter_sets_its_event_once_asked_however_often() -> None:
    event = threading.Event()
    set_it = signal_safe_setter(event, name="test-setter")
    assert not event.wait(0)
    for _ in range(3):
        set_it()
    assert event.wait(30)
