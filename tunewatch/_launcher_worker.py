"""A re-tuning worker process as the launcher sees it: the name it claims its job under,
the command line and environment it is started with, and how it ended (its exit status,
its stderr's end, and what of that end its job's error may show: :func:`store_outage`,
the redaction of any other: :func:`tunewatch._redaction.redacted`)."""

from __future__ import annotations

import os
import re
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
    id to be appended: the ``tunewatch`` command as its console script runs it
    (:mod:`tunewatch._entry`, which freezes the worker's heap for its exit).

    ``-P``: ``python -m`` would put the daemon's working directory first on ``sys.path``,
    and a ``tunewatch/`` package or a ``numpy.py`` there (the Docker image's WORKDIR holds
    a copy of the sources) ran in the worker instead of the daemon's code, with its
    environment. ``PYTHONPATH`` is still honoured."""
    return [
        sys.executable,
        "-P",
        "-m",
        "tunewatch",
        "--config",
        str(config_path),
        "worker",
        "--job",
    ]


#: A job's error when its worker ended on the store's outage (its database unreachable,
#: its artefact directory full or read-only): a job's error is any caller's to read
#: (``GET /v1/jobs/{id}``, the ``retune_*`` events), and the driver's text names the
#: database's host, port and user, the directory's error its path. The launcher logs the
#: worker's stderr whole at warning.
STORE_UNAVAILABLE = "the store was unavailable (the daemon's log has the worker's error)"
ARTEFACTS_UNWRITABLE = (
    "the store was unavailable: its artefact directory could not be written (the daemon's "
    "log has the worker's error)"
)
STUDY_STORAGE_UNAVAILABLE = (
    "the study's storage was unavailable (the daemon's log has the worker's error)"
)

#: The line a worker ends on when a command fails with one of tunewatch's errors
#: (:func:`tunewatch._cli.failure_line`, exit status 2), its message on one line.
_FAILURE_LINE = "tunewatch: error: "
#: The messages of the store's outages, as :class:`~tunewatch._errors.DatabaseUnavailableError`
#: words them (the store's transactions, its ping, the artefact directory), and the
#: worker's own for the study's storage outlasting its wait.
_OUTAGES = (
    (
        re.compile(
            r"store .+?: (?:database unavailable|database connection lost"
            r"|a table or column this tunewatch uses is missing)"
        ),
        STORE_UNAVAILABLE,
    ),
    (re.compile(r"the store's schema is at revision "), STORE_UNAVAILABLE),
    (re.compile(r"cannot write artefact [0-9a-f]{64} under "), ARTEFACTS_UNWRITABLE),
    (re.compile(r"job \d+: the study's storage is unavailable"), STUDY_STORAGE_UNAVAILABLE),
)


def store_outage(tail: str) -> str | None:
    """The fixed reason (:data:`STORE_UNAVAILABLE`, :data:`ARTEFACTS_UNWRITABLE`,
    :data:`STUDY_STORAGE_UNAVAILABLE`) for a worker whose stderr, ``tail``, ends on a
    store outage, from its failure line; ``None`` for any other end."""
    # the last one's, anywhere on its line: a progress bar drawn last has no newline
    at = tail.rfind(_FAILURE_LINE)
    if at < 0:
        return None
    message = tail[at + len(_FAILURE_LINE) :].split("\n", 1)[0]
    for pattern, reason in _OUTAGES:
        if pattern.match(message):
            return reason
    return None
