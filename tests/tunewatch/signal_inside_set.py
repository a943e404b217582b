"""A second signal delivered where a burst, or Ctrl-C pressed twice, can find it: inside
the first signal's handler, while that handler's ``Event.set`` holds the event's lock.
Python runs a handler in the main thread at the next bytecode, wherever that thread is;
a handler calling ``set`` there waits for a lock (a plain one, not re-entrant) its own
thread holds, for ever. tests/tunewatch/test_worker_sigterm_burst.py has the tuning
worker's case.
"""

from __future__ import annotations


def signal_inside_set(handler: str, signum: str) -> str:
    """Python source for a child process to run first: a trace function that raises
    ``signal.<signum>`` once, inside ``Event.set`` called by the function named ``handler``
    (the first signal's handler) in the main thread, at ``self._flag = True``: the
    event's lock held. The source defines ``signalled``, a list that holds ``True`` once
    it has: a test can tell the second signal came."""
    return f"""
import inspect, signal, sys, threading

_SET = threading.Event.set.__code__
_FLAG_LINE = next(
    n
    for n, text in enumerate(inspect.getsourcelines(threading.Event.set)[0], _SET.co_firstlineno)
    if "self._flag = True" in text
)
signalled = []

def _in_set(frame, event, arg):
    if event == "line" and frame.f_lineno == _FLAG_LINE and not signalled:
        signalled.append(True)
        signal.raise_signal(signal.{signum})
    return _in_set

def _calls(frame, event, arg):
    caller = frame.f_back
    if frame.f_code is _SET and caller is not None and caller.f_code.co_name == {handler!r}:
        return _in_set
    return None

sys.settrace(_calls)
"""
