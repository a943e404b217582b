"""A re-tuning worker process as the launcher sees it: the name it claims its job under,
the command line and environment it is started with, and how it ended (its exit status
and its stderr's end)."""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from tunewatch._config import ENV_ADMIN_TOKEN, ENV_DATA_DIR, ENV_STORE_URL
from tunewatch._parent_watch import LAUNCHER_PID_ENV

#: How much of a worker's stderr is read when it exits: at most its last 20 lines, from
#: its last 4 KiB.
_STDERR_LINES = 20
_STDERR_BYTES = 4096
#: What a worker process is started without: it reads the configuration the daemon wrote
#: for it (``--config``), which holds the daemon's effective settings, the environment's
#: overrides applied. Inherited, they applied again in the worker: a daemon built without
#: them (the demo's) had its workers look for their jobs in another store. Nor does a
#: worker sign in: the admin token (``TUNEWATCH_ADMIN_TOKEN``) is not passed on either.
WORKER_ENV_DROPPED = (ENV_DATA_DIR, ENV_STORE_URL, "TUNEWATCH_CONFIG", ENV_ADMIN_TOKEN)


def worker_id(pid: int) -> str:
    """The name a worker process claims its job under (``host:pid``)."""
    return f"{socket.gethostname()}:{pid}"


def describe_exit(returncode: int) -> str:
    """A worker's exit status for a person: ``status 1``, ``SIGSEGV (-11)``, ``SIGKILL
    (-9): killed, e.g. out of memory``."""
    if returncode >= 0:
        return f"status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    if -returncode == signal.SIGKILL:
        return f"{name} ({returncode}): killed, e.g. out of memory"
    return f"{name} ({returncode})"


def stderr_tail(stderr: Any) -> str:
    """The end of a worker's stderr: its last lines, as a terminal shows them (a progress
    bar redrawn with carriage returns is its last drawing)."""
    if stderr is None:
        return ""
    stderr.seek(0, 2)
    stderr.seek(max(0, stderr.tell() - _STDERR_BYTES))
    text = stderr.read().decode("utf-8", "replace").strip()
    lines = [line.rstrip("\r").rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]
    return "\n".join(lines[-_STDERR_LINES:]).strip()


def worker_environment() -> dict[str, str]:
    """This process's environment without :data:`WORKER_ENV_DROPPED`, for a worker it
    starts, naming this process as the worker's launcher
    (:data:`~tunewatch._parent_watch.LAUNCHER_PID_ENV`): the worker stops, as at SIGTERM,
    when this process dies (:func:`~tunewatch._parent_watch.stop_with_launcher`)."""
    env = {k: v for k, v in os.environ.items() if k not in WORKER_ENV_DROPPED}
    env[LAUNCHER_PID_ENV] = str(os.getpid())
    return env


def worker_command(config_path: Path) -> list[str]:
    """A worker's command line for the daemon configuration at ``config_path``, its job
    id to be appended.

    ``-P``: ``python -m`` would put the daemon's working directory first on ``sys.path``,
    and a ``tunewatch/`` package or a ``numpy.py`` there (the Docker image's WORKDIR holds
    a copy of the sources) ran in the worker instead of the daemon's code, with its
    environment. ``PYTHONPATH`` is still honoured."""
    return [
        sys.executable,
        "-P",
        "-m",
        "tunewatch._cli",
        "--config",
        str(config_path),
        "worker",
        "--job",
    ]
