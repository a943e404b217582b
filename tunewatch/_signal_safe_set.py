"""Setting a :class:`threading.Event` from a signal handler without a deadlock.

``Event.set`` takes the event's lock, a plain (not re-entrant) ``Lock``. Python runs a
signal's handler in the main thread between two bytecodes, so a second signal can run the
handler again while the first one's ``set`` holds that lock: the second waits for a lock
its own thread holds, for ever. A tuning worker did: its daemon killed, the kernel sends
its parent-death SIGTERM as each of the daemon's threads dies, a burst, and the worker
hung in its SIGTERM handler, tuning nothing and stopping never.

:meth:`queue.SimpleQueue.put` is re-entrant (its documentation says a signal handler may
call it): the handler puts, and a thread of its own sets the event.

This is for an event the main thread itself waits on: a worker's main thread waits on its
stop through a storage outage, holding the event's lock at moments, so even the first
signal's handler must not take it. Where only the handler takes the lock (the others
call ``is_set``, which takes none), setting the event at the first signal and only noting
the later ones is enough, and keeps the set done before the handler returns, as serve's
readiness needs (``tunewatch/_serve.py``, ``tunewatch/_commands/_backup.py``).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

__all__ = ["signal_safe_setter"]


def signal_safe_setter(event: threading.Event, *, name: str) -> Callable[[], None]:
    """A function that sets ``event`` and that a signal handler may call, however often
    and however nested: it only asks the thread ``name`` (started now, a daemon) to set
    it, which it does at once."""
    asked: queue.SimpleQueue[None] = queue.SimpleQueue()

    def set_when_asked() -> None:
        asked.get()
        event.set()

    threading.Thread(target=set_when_asked, name=name, daemon=True).start()
    return lambda: asked.put(None)
