"""A tuning worker's CPU priority: lowered to ``tuning.worker_nice`` by the worker process
itself when it starts, so that on the daemon's host its trials yield the cores to scoring,
and a worker started by hand on another machine honours the setting too.

Each thread has a niceness of its own on Linux (``setpriority(PRIO_PROCESS, 0)`` sets
the calling thread's), and a thread inherits its creator's: the threads already running
when the worker reads its configuration (numpy's BLAS pool, started at import) are lowered
one by one, and those started afterwards inherit the main thread's."""

from __future__ import annotations

import logging
import os
import threading

logger = logging.getLogger(__name__)

#: Where Linux lists a process's threads; elsewhere the process has one niceness.
_TASKS = "/proc/self/task"


def lower_priority(nice: int) -> int:
    """Lower this process's CPU priority to niceness ``nice`` (0..19), every thread of it;
    one already lower (a higher niceness: started under ``nice -n 15``) keeps its own, as
    raising a priority needs privileges. Returns the calling thread's niceness after.
    A refusal (a sandbox forbidding ``setpriority``) is logged, not raised: the worker
    tunes on at the priority it has."""
    me = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, 0)
    after = max(before, nice)
    try:
        if after != before:
            os.setpriority(os.PRIO_PROCESS, 0, after)
        for tid in _other_threads(me):
            _lower_thread(tid, nice)
    except PermissionError as exc:
        logger.warning("could not lower the worker's CPU priority to niceness %d: %s", nice, exc)
        return os.getpriority(os.PRIO_PROCESS, 0)
    if after != before:
        logger.info(
            "worker runs at niceness %d (tuning.worker_nice %d; it was %d)", after, nice, before
        )
    else:
        logger.debug(
            "worker stays at niceness %d (tuning.worker_nice %d: never raised)", before, nice
        )
    return after


def _other_threads(me: int) -> list[int]:
    try:
        return [tid for tid in map(int, os.listdir(_TASKS)) if tid != me]
    except FileNotFoundError:  # not Linux: the priority is the process's, already set
        return []


def _lower_thread(tid: int, nice: int) -> None:
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except ProcessLookupError:  # the thread ended meanwhile
        return
