"""A thread that dies of an exception is logged in the daemon's log, with its traceback.

The daemon's loops (the recorder's writer, the store's checkpointer, the line-up
refresher, heartbeats, the scheduler's) each catch what their work may raise; one that
still dies took its traceback to Python's default hook, which wrote "Exception in thread
…" to raw stderr, outside the lines an operator greps and ships, and said nothing of what
stopped working. :func:`log_thread_deaths` routes it through :mod:`logging`, at
``CRITICAL``, naming the thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

Hook = Callable[[threading.ExceptHookArgs], object]


def log_thread_deaths() -> None:
    """Install the hook once per process, chained to the one installed before unless that
    is Python's default (which would print the traceback a second time): a test runner's
    own hook still sees the exception."""
    current = threading.excepthook
    if getattr(current, "_tunewatch", False):
        return
    before: Hook | None = None if current is threading.__excepthook__ else current

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:  # a thread's own clean exit: not a death
            return
        name = args.thread.name if args.thread is not None else "(unknown)"
        logger.critical(
            "thread %s died: %s: %s; what it ran has stopped in this process",
            name,
            args.exc_type.__name__,
            args.exc_value,
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),  # type: ignore[arg-type]
        )
        if before is not None:
            before(args)

    hook._tunewatch = True  # type: ignore[attr-defined]
    threading.excepthook = hook
