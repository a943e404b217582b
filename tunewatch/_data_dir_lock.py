"""Which tunewatch processes run on a data directory, for the one that deletes what it
holds: ``tunewatch demo``, which clears its directory at every start.

A process that runs on a data directory (``tunewatch serve``, ``tunewatch demo``) holds a
shared ``flock`` on its :data:`LOCK_FILE` for its whole run; the demo clears a directory
only under the exclusive lock, taken without waiting, and refuses it when another holds
the lock. Without it, ``tunewatch demo --data-dir`` on the directory a daemon served (the
README's ``TUNEWATCH_DATA_DIR=.tunewatch-demo tunewatch serve`` after a demo) deleted the
live store under the daemon, which went on answering 200 while committing every request
to the deleted file.

The lock is the kernel's: it ends with the process however that ends (``kill -9`` too),
so there is no stale lock to judge. The file is never deleted: a process that opened it
before an unlink would lock the deleted file while the next one locked a new file, each
alone. It is opened close-on-exec, so that a tuning worker (or any other program a daemon
starts) does not hold its daemon's lock past the daemon. A ``flock`` belongs to the open
file description: each :class:`DataDirLock` opens the file anew, so two of them in one
process conflict as two processes do.

A file system that refuses ``flock`` (NFS with no lock daemon) runs unlocked, with a
logged warning: there the demo cannot tell a served directory."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path
from types import TracebackType

from tunewatch._errors import os_reason

__all__ = ["LOCK_FILE", "DataDirLock", "shared_data_dir_lock"]

logger = logging.getLogger(__name__)

#: In the data directory, kept there once made.
LOCK_FILE = ".tunewatch.lock"
_UNLOCKED = (
    "%s: the data directory is used without its lock (%s): `tunewatch demo` cannot tell "
    "that it is in use"
)


class DataDirLock:
    """The lock file of ``data_dir``, opened (both made if missing: the directory
    owner-only, as the store makes it); no lock is held until :meth:`share` or
    :meth:`take_alone`, and none after :meth:`close`."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # read-only is all flock needs: a file another user made opens too (0644)
            self._fd = os.open(
                self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644
            )
        except OSError as exc:
            logger.warning(_UNLOCKED, self.path, os_reason(exc))

    def share(self) -> None:
        """Hold the shared lock: at once, unless a demo clears the directory under the
        exclusive one, which it holds only while clearing. From the exclusive lock (the
        demo's, once cleared) the kernel converts it; POSIX does not promise a conversion
        is atomic, Linux makes it under one spinlock."""
        if self._fd is None:
            return
        try:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                logger.info("%s: waiting for `tunewatch demo` to clear the directory", self.path)
                fcntl.flock(self._fd, fcntl.LOCK_SH)
        except OSError as exc:  # ENOLCK: a file system without locks (NFS with no lockd)
            logger.warning(_UNLOCKED, self.path, os_reason(exc))
            self.close()

    def take_alone(self) -> bool:
        """Take the exclusive lock without waiting: ``False`` while another process (or
        another :class:`DataDirLock` of this one) holds the lock; ``True`` held, or where
        there is no lock to take (see the module)."""
        if self._fd is None:
            return True
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                return False
            logger.warning(_UNLOCKED, self.path, os_reason(exc))
            self.close()
        return True

    def close(self) -> None:
        """Release the lock; the file stays (see the module)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def shared_data_dir_lock(data_dir: Path) -> DataDirLock:
    """The shared lock of ``data_dir``, held until it is closed: for a process's whole
    run."""
    lock = DataDirLock(data_dir)
    lock.share()
    return lock
