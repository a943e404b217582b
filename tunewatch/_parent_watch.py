"""A launched tuning worker's tie to the daemon that launched it: the worker stops, as at
that daemon's SIGTERM, when the daemon dies (``kill -9``, the OOM killer, a crash).

Nothing else ties them: a worker outliving its daemon was reparented to PID 1, counted
against no launcher's ``tuning.workers`` and stopped by none, and tuned on for its whole
wall budget, registering its version after the daemon was gone. The launcher names
itself in the worker's environment (:data:`LAUNCHER_PID_ENV`,
:func:`tunewatch._launcher_worker.worker_environment`); a worker started by hand has no
such variable and is left alone.

Linux's ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` has the kernel send the worker SIGTERM when
its parent dies. Strictly, when the parent *thread* that started it ends: the launcher
starts workers from its tick, which runs on a thread of the scheduler's task pool (whose
threads live until the scheduler shuts down, as the daemon stops, when it stops its
workers anyway), or from the daemon's main thread (the demo)."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import MutableMapping

from tunewatch._errors import ConfigError

__all__ = ["LAUNCHER_PID_ENV", "stop_with_launcher"]

logger = logging.getLogger(__name__)

#: The process id of the daemon that launched a worker, set by its launcher only.
LAUNCHER_PID_ENV = "TUNEWATCH_LAUNCHER_PID"
#: ``linux/prctl.h``
_PR_SET_PDEATHSIG = 1


def stop_with_launcher(
    stop: threading.Event, *, environ: MutableMapping[str, str] = os.environ
) -> int | None:
    """Have ``stop`` set (by the worker's SIGTERM handler, which must be installed) when
    the daemon named by :data:`LAUNCHER_PID_ENV` in ``environ`` dies; set it now if that
    daemon is already gone (it died before it could be watched: this process is no longer
    its child). Returns the daemon's process id; ``None`` for a worker no launcher started
    (no such variable), which nothing ties to any process. The variable is taken out of
    ``environ``: nothing this worker starts inherits it."""
    value = environ.pop(LAUNCHER_PID_ENV, None)
    if value is None:
        return None
    try:
        launcher = int(value)
    except ValueError:
        raise ConfigError(
            f"${LAUNCHER_PID_ENV} must be the process id of the daemon that launched this "
            f"worker, got {value!r}"
        ) from None
    _arm_parent_death_signal()
    # after arming: the daemon may have died while this worker started
    if os.getppid() != launcher:
        logger.warning(
            "the daemon that launched this worker (pid %d) is gone: the worker stops as at "
            "its SIGTERM, its job queued again for the next daemon",
            launcher,
        )
        stop.set()
    return launcher


def _arm_parent_death_signal() -> None:
    """Ask the kernel for SIGTERM when this process's parent dies; a platform without
    ``prctl`` is logged: there the worker outlives a daemon that dies."""
    if not sys.platform.startswith("linux"):
        logger.warning(
            "this worker cannot be told when its daemon dies on %s (no prctl): it would "
            "tune on after the daemon's death",
            sys.platform,
        )
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        logger.warning(
            "prctl(PR_SET_PDEATHSIG) failed (%s): this worker would tune on after its "
            "daemon's death",
            os.strerror(errno),
        )
