"""The configuration file a daemon writes for the tuning workers it starts: one per
daemon process, ``<data_dir>/worker-config.<pid>.<random>.yaml``, removed as it closes.

Every daemon on a data_dir wrote the one ``worker-config.yaml``, and every launcher started
its workers on it: the last daemon to start decided the leader's workers' settings (a
scoring replica's defaults ran the leader's retunes, 30 trials where its config said 3).
The random part parts two daemons of one pid: pid 1 in containers sharing a volume.

The file is written whole beside its path, then renamed over it: rewritten in place
(truncated, then written), a worker starting meanwhile, or after a daemon killed in
between, read an empty file, which is the built-in defaults (a new store under its
working directory, and its job not found there). It holds the store's URL, password
included: mode 0600, and held locked (``flock``) while its daemon lives, so that a later
start removes the file of a daemon that died (:func:`remove_stale_worker_configs`)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import secrets
import stat
import tempfile
from pathlib import Path

from tunewatch._errors import os_reason

__all__ = ["WORKER_CONFIG_PREFIX", "WorkerConfigFile", "remove_stale_worker_configs"]

logger = logging.getLogger(__name__)


class WorkerConfigFile:
    """This process's worker configuration in ``data_dir`` (nothing written yet): the
    files of daemons that died are removed first (:func:`remove_stale_worker_configs`)."""

    def __init__(self, data_dir: Path) -> None:
        remove_stale_worker_configs(data_dir)
        self.path = data_dir / f"{WORKER_CONFIG_PREFIX}{os.getpid()}.{secrets.token_hex(4)}.yaml"
        self._fd: int | None = None  # open and locked once written: the file is in use

    def write(self, text: str) -> Path:
        """Write ``text`` whole at :attr:`path` (again: replaced whole) and hold it; the
        ``OSError`` of a full or read-only ``data_dir`` is raised."""
        held = _write_worker_config(self.path, text)
        if self._fd is not None:  # the file it replaced, unlinked by the rename
            os.close(self._fd)
        self._fd = held
        return self.path

    def remove(self) -> None:
        """Remove the file, if written: it holds the store URL. A failure is logged (a
        later start removes it)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            logger.warning("cannot remove %s: %s", self.path, os_reason(exc))
        os.close(self._fd)
        self._fd = None


#: The name of a daemon's worker configuration, its pid and a random part following.
WORKER_CONFIG_PREFIX = "worker-config."
#: The one file every daemon on a data_dir wrote before each wrote its own.
_EARLIER_WORKER_CONFIG = "worker-config.yaml"


def remove_stale_worker_configs(data_dir: Path) -> list[Path]:
    """Remove from ``data_dir``, at every daemon start, the workers' configurations (each
    holding the store URL) no live process holds, and return them.

    Held means locked (``flock``, see :class:`WorkerConfigFile`), not named by a live
    pid: a container's daemon is pid 1 in every container sharing a volume, and sees none
    of the others' processes. Removed: the files of daemons that died (``kill -9``) and
    their temporary files that hold anything (an empty one's writer is yet to lock it).
    Not ``worker-config.yaml``, the one file earlier versions wrote: a daemon of one
    still serving on the data_dir (a rolling upgrade) starts its workers on it."""
    try:
        names = sorted(entry.name for entry in data_dir.iterdir())
    except FileNotFoundError:
        return []
    removed = []
    for name in names:
        path = data_dir / name
        if name == _EARLIER_WORKER_CONFIG:
            continue
        if name.startswith(WORKER_CONFIG_PREFIX) and name.endswith(".yaml"):
            gone = _remove_unheld(path, keep_empty=False)
        elif name.startswith(f".{WORKER_CONFIG_PREFIX}"):  # a temporary file, made first
            gone = _remove_unheld(path, keep_empty=True)
        else:
            continue
        if gone:
            logger.info("removed %s, a tuning workers' configuration no live daemon holds", path)
            removed.append(path)
    return removed


def _remove_regular(path: Path) -> bool:
    """Remove ``path`` if it is a regular file; whether it did."""
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return False
        path.unlink()
        return True
    except FileNotFoundError:  # removed meanwhile: another start's
        return False
    except OSError as exc:
        logger.warning("cannot remove %s, a stale workers' configuration: %s", path, os_reason(exc))
        return False


def _remove_unheld(path: Path, *, keep_empty: bool) -> bool:
    """Remove regular file ``path`` unless a process holds it locked (or, ``keep_empty``,
    it is empty); whether it did. Where the file system refuses ``flock``, left."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:  # gone meanwhile, or a link: left
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: a live daemon's
        held = os.fstat(fd)
        # and still the file it locked, not one renamed over it since (a rewrite)
        if (keep_empty and held.st_size == 0) or not os.path.samestat(held, path.lstat()):
            return False
        return _remove_regular(path)
    except OSError:
        return False
    finally:
        os.close(fd)


def _write_worker_config(path: Path, text: str) -> int:
    """Write ``text`` to ``path`` whole: a temporary file beside it, locked, fsynced,
    renamed over it, the rename fsynced (see :class:`WorkerConfigFile`). Returns the
    file's descriptor, which holds the lock: closed, the file is free to be removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # the store and tuning URLs may carry a password: the owner's eyes only (mkstemp
    # makes it 0600, whatever the umask; the rename gives the target its mode)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    replaced = written = False
    try:
        _lock(fd, path)  # waits while a start's sweep looks at it (it leaves an empty one)
        # on this descriptor alone: closing another of the file's drops the lock on NFS
        data = memoryview(text.encode("utf-8"))
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
        os.replace(temporary, path)
        replaced = True
        directory = os.open(path.parent, os.O_RDONLY)  # the rename, kept through a crash
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        written = True
    finally:
        if not written:  # whatever stopped it, Ctrl-C included: no file left
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path if replaced else temporary)
            os.close(fd)
    return fd


def _lock(fd: int, path: Path) -> None:
    """Lock ``fd``, ``path``'s file, for this process's life; on a file system that
    refuses ``flock``, warn: no start can tell it is in use, so none removes it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:
        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        logger.warning("%s is not locked (%s): left on disk if this process dies", path, exc)
