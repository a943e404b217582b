"""Deleting the temporary files killed artefact writes left behind.

:meth:`ArtefactStore.put <tunewatch._artefacts.ArtefactStore.put>` writes
``root/<aa>/.tmp-XXXX`` and renames it to the artefact's name: a process killed between
the two (``kill -9``, the OOM killer, a power cut) leaves the temporary file, up to an
upload's size, which nothing else ever deletes. The daemon sweeps them once at its start,
in a thread of its own (:func:`start_sweep`), so that a large directory never delays
serving.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from shadow import use_batch_scheduling
from tunewatch._artefacts import TEMPORARY_PREFIX
from tunewatch._errors import os_reason

logger = logging.getLogger(__name__)

#: How old a temporary artefact file must be, by its own mtime against the file system's
#: clock, before a sweep deletes it: an hour. Several processes write into one artefact
#: directory at once (the daemon, tuning workers, the CLI, replicas sharing a
#: ``data_dir``), and a younger file may be one of their writes in progress; no write takes
#: that long (the largest, 2 GiB, is written and fsynced in seconds, every write of its
#: bytes moving the mtime on). A writer stopped longer than that between its write and its
#: rename (SIGSTOP, a VM paused) finds its file gone: its write fails (``StoreError``) and
#: is retried whole, never renamed half.
STALE_TEMPORARY_AGE_S = 3600.0

_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class TemporariesSwept:
    """What one sweep of an artefact directory did."""

    #: temporary files deleted
    removed: int
    #: their sizes' sum
    removed_bytes: int
    #: shard directories or files that could not be read or deleted, each logged
    failed: int


def sweep_temporaries(
    root: Path, *, now: float | None = None, stop: threading.Event | None = None
) -> TemporariesSwept:
    """Delete the temporary files of killed writes under ``root``: the regular files named
    ``.tmp-*`` in its shard directories (``root/<aa>``, two hex digits) whose mtime is
    :data:`STALE_TEMPORARY_AGE_S` or more before ``now`` (default: the file system's clock,
    read from a file made for it in ``root``, so that a shared directory's files are aged
    by the clock that stamped them, not this host's). A link, a directory, any other name,
    a shard directory that is a link (its target may hold others' files) are left; links
    are never followed. A shard directory or file that cannot be read or deleted is logged
    at warning, naming it, and the sweep goes on; ``stop`` set ends it between two shard
    directories."""
    removed = removed_bytes = failed = 0
    try:
        with os.scandir(root) as entries:
            shards = sorted(
                entry.name
                for entry in entries
                if len(entry.name) == 2
                and set(entry.name) <= _HEX
                and entry.is_dir(follow_symlinks=False)
            )
        if now is None:
            now = _file_system_now(root)
    except FileNotFoundError:  # nothing was ever written
        return TemporariesSwept(removed=0, removed_bytes=0, failed=0)
    except OSError as exc:
        logger.warning(
            "cannot sweep the temporary files of interrupted artefact writes under %s: %s",
            root,
            os_reason(exc),
        )
        return TemporariesSwept(removed=0, removed_bytes=0, failed=1)
    cutoff = now - STALE_TEMPORARY_AGE_S
    for name in shards:
        if stop is not None and stop.is_set():
            break
        count, size, errors = _sweep_shard(root / name, cutoff)
        removed += count
        removed_bytes += size
        failed += errors
    return TemporariesSwept(removed=removed, removed_bytes=removed_bytes, failed=failed)


def _sweep_shard(shard: Path, cutoff: float) -> tuple[int, int, int]:
    """Delete the stale temporary files of one shard directory, opened without following
    a link (one put in its place since it was listed is left) and named relative to it:
    how many, their bytes, and the failures."""
    try:
        fd = os.open(shard, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:  # removed since it was listed
        return 0, 0, 0
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a link or a file in its place since
            return 0, 0, 0
        logger.warning("cannot read artefact shard directory %s: %s", shard, os_reason(exc))
        return 0, 0, 1
    removed = removed_bytes = failed = 0
    try:
        with os.scandir(fd) as entries:
            candidates = [e.name for e in entries if e.name.startswith(TEMPORARY_PREFIX)]
        for name in candidates:
            try:
                found = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISREG(found.st_mode) or found.st_mtime > cutoff:
                    continue
                os.unlink(name, dir_fd=fd)  # a link in its place since: the link goes
            except FileNotFoundError:  # another process's sweep, or its rename, came first
                continue
            except OSError as exc:
                logger.warning(
                    "cannot delete %s, the temporary file of an interrupted artefact write: %s",
                    shard / name,
                    os_reason(exc),
                )
                failed += 1
                continue
            removed += 1
            removed_bytes += found.st_size
    except OSError as exc:
        logger.warning("cannot read artefact shard directory %s: %s", shard, os_reason(exc))
        failed += 1
    finally:
        os.close(fd)
    return removed, removed_bytes, failed


def _file_system_now(root: Path) -> float:
    """The file system's clock: the mtime of a file made in ``root`` for it (unnamed where
    the system allows, else deleted at once)."""
    with tempfile.TemporaryFile(dir=root) as probe:
        return os.fstat(probe.fileno()).st_mtime


def start_sweep(root: Path, *, stop: threading.Event) -> threading.Thread:
    """:func:`sweep_temporaries` of ``root`` in a daemon thread, started, which logs at info
    what it deleted when done: serving does not wait for it. (On a local ext4 disk, its
    cache warm, 256 shard directories of 100 files each took 60 ms, 110 ms deleting 1,280
    of them; of 400 files each, 100 ms and 200 ms; a directory shared over the network, or
    read cold, may take far longer.)
    ``stop`` set ends it between two shard directories."""
    thread = threading.Thread(
        target=_sweep_and_log, args=(root, stop), name="tunewatch-artefact-sweep", daemon=True
    )
    thread.start()
    return thread


def _sweep_and_log(root: Path, stop: threading.Event) -> None:
    use_batch_scheduling()  # as the daemon's other background threads: never preempting serving
    try:
        swept = sweep_temporaries(root, stop=stop)
    except Exception:  # the thread's boundary: logged with its traceback, the start unharmed
        logger.exception("the sweep of temporary artefact files under %s failed", root)
        return
    logger.info(
        "swept %d temporary files (%d bytes) of interrupted artefact writes under %s%s%s",
        swept.removed,
        swept.removed_bytes,
        root,
        f"; {swept.failed} could not be read or deleted (logged)" if swept.failed else "",
        "; stopped before its end" if stop.is_set() else "",
    )
