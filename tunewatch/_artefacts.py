"""Content-addressed artefact directory: a file's name is its SHA-256.

With a PostgreSQL store the store keeps each artefact's bytes and the directory is this
host's verified cache of them.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from tunewatch._errors import DatabaseUnavailableError, NotFoundError, StoreError, os_reason

if TYPE_CHECKING:
    from tunewatch.store import Store

logger = logging.getLogger(__name__)

#: The errors of a directory that cannot take a write now, whatever the bytes: full (its
#: disk or its quota), past the daemon's file-size limit (``ulimit -f``: EFBIG, which the
#: SQLite store answers 503 for too), read-only (remounted so after an I/O error, too),
#: failing, or not writable by the daemon's user (an operator's misconfiguration). The
#: store is unavailable: 503, as when the database is full, and retried once the operator
#: acts.
_UNAVAILABLE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM}
)

#: The errors of a shard directory (``root/<aa>``, or ``root`` itself) that cannot be one
#: now: a regular file in its place, or a link to a disk not mounted (a dangling link);
#: the operator's to repair, so unavailable too (they were a 500 "[Errno 17] File exists").
_NOT_A_DIRECTORY_ERRNOS = frozenset({errno.EEXIST, errno.ENOTDIR, errno.ENOENT, errno.ELOOP})

#: The largest ONNX file an artefact can be: protobuf's limit on one message (2 GiB), past
#: which no ONNX model without external data (which is refused) can be held. A larger file
#: at an artefact's path is refused unread: a sparse 6 GiB one in a shadow version's place
#: stopped the daemon's start with a MemoryError. (Not ``server.max_artefact_bytes``, the
#: uploads' limit: lowered below a champion's size, it took the champion out of service.)
MAX_ONNX_BYTES = 2**31

#: How the temporary file of a write in progress is named, in its shard directory, until it
#: is renamed to the artefact's: one a killed write left is deleted by
#: :func:`tunewatch._artefact_sweep.sweep_temporaries` once it is stale.
TEMPORARY_PREFIX = ".tmp-"

#: What a file that is not a regular one is, for a message.
_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
)


class ArtefactStore:
    """Stores immutable blobs (ONNX files, reference snapshots, drift reports) under
    ``root/<aa>/<sha256><suffix>``.

    ``store``: the one every host of the deployment shares. When it is PostgreSQL (hosts
    may share it: replicas, tuning workers on other machines, the CLI), :meth:`put` also
    keeps the bytes in it and ``root`` is this host's cache: :meth:`get` reads a file that
    is missing, damaged or unreadable here from the store, verifies its SHA-256 and
    caches it again, so that each host may have its own ``data_dir``. When it is SQLite
    (it lives on one host, beside its ``data_dir``), or not given, the directory is the
    only copy and the store is neither written nor read: a second copy on the same disk
    would only double its use. :meth:`put` of bytes already cached still writes them to
    the store, so registering or importing an artefact stored before the store kept them
    fills its row.
    """

    def __init__(
        self, root: str | Path, *, store: Store | None = None, max_bytes: int = MAX_ONNX_BYTES
    ) -> None:
        self.root = Path(root)
        self.store = store
        #: the largest ONNX file :meth:`get` reads (:data:`MAX_ONNX_BYTES`); every other
        #: kind is read up to its own size (a tuned version's reference, its whole training
        #: window, may be larger, and is read by an evaluation, whose failure is its model's
        #: alone, not by the line-up every model's serving needs)
        self.max_bytes = max_bytes
        #: the store keeping the bytes: given, and not SQLite
        self._shared = store if store is not None and store.dialect != "sqlite" else None

    def path(self, sha256: str, suffix: str = ".onnx") -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"`sha256` must be 64 lowercase hex digits, got {sha256!r}")
        return self.root / sha256[:2] / f"{sha256}{suffix}"

    def put(self, data: bytes, suffix: str = ".onnx") -> str:
        """Write ``data`` durably (temp file, fsync, rename, fsync of the directory and of
        any directory created for it) and return its SHA-256. A file already under that
        name is kept only when its content matches it; a damaged one is replaced. Then,
        with a PostgreSQL store, keep the bytes there (once: a row kept already is left
        alone); its errors (``StoreError``) are raised after the file was written.

        A directory that cannot take the write now (full, read-only, an I/O error, no
        permission; a regular file, or a link whose target is missing, in its place)
        raises ``DatabaseUnavailableError`` (a ``StoreUnavailableError``,
        which the HTTP API answers 503 with the store's fixed message), logged here at
        warning with the path and the system's reason; any other failure ``StoreError``."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest, suffix)
        if not _holds(target, digest, len(data)):
            if target.exists():
                logger.warning(
                    "artefact %s under %s is damaged; writing it again", digest, self.root
                )
            try:
                self._write(target, digest, data)
            except DatabaseUnavailableError as exc:
                logger.warning("%s", exc.message)
                raise
        if self._shared is not None:
            self._shared.put_artefact(data, suffix)
        return digest

    def get(self, sha256: str, suffix: str = ".onnx") -> bytes:
        """Read an artefact back, verifying its content still matches its name:
        ``NotFoundError`` when it is missing, ``StoreError`` when it is damaged or cannot
        be read (a directory in its place, no permission, an I/O error: the path and the
        system's reason in the message; not a regular file, such as a named pipe or a link
        to a device; an ONNX file larger than ``max_bytes``: refused before it is read, and a file
        growing while read is read no further than that), so that a caller handling one
        model's fault handles every one. With a PostgreSQL store such a file is read from
        the store instead, verified and cached again (a cache that cannot be written is
        logged, and the bytes returned); the errors above are raised only when the store
        holds no copy either, and say so, and ``StoreError`` when its copy is corrupt."""
        target = self.path(sha256, suffix)
        try:
            return _read(self.root, target, sha256, max_bytes=self._bound(suffix))
        except StoreError as exc:
            if self._shared is None:
                raise
            local = exc
        data = self._shared.get_artefact(sha256, suffix)
        if data is None:
            raise type(local)(f"{local.message}; the store holds no copy of it") from local
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StoreError(
                f"{local.message}; its copy in the store is corrupt too: its content hash differs"
            ) from local
        try:
            self._write(target, sha256, data)
        except StoreError as exc:
            logger.warning(
                "artefact %s read from the store (%s) but not cached again: %s",
                sha256,
                local.message,
                exc.message,
            )
        else:
            logger.info("artefact %s cached again from the store: %s", sha256, local.message)
        return data

    def share_cached(self, keys: Iterable[tuple[str, str]]) -> int:
        """Keep in a PostgreSQL store the artefacts of ``keys`` (SHA-256, suffix) cached
        here that it lacks, and return how many: those put before the store kept
        artefacts (schema 0014), which other hosts could not read. One not cached here
        either (another host's, or damaged here) is left to the host holding it. Nothing
        without a PostgreSQL store."""
        if self._shared is None:
            return 0
        shared = 0
        for sha256, suffix in sorted(self._shared.missing_artefacts(keys)):
            try:
                data = _read(
                    self.root, self.path(sha256, suffix), sha256, max_bytes=self._bound(suffix)
                )
            except StoreError:
                continue
            shared += self._shared.put_artefact(data, suffix)
        return shared

    def _bound(self, suffix: str) -> int | None:
        return self.max_bytes if suffix == ".onnx" else None

    def _write(self, target: Path, digest: str, data: bytes) -> None:
        created = [d for d in (target.parent, *target.parent.parents) if not d.exists()]
        try:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TEMPORARY_PREFIX)
            except OSError as exc:
                if exc.errno in _NOT_A_DIRECTORY_ERRNOS:
                    raise DatabaseUnavailableError(
                        f"cannot write artefact {digest} under {self.root}: "
                        f"{_not_a_directory(target.parent, exc)}"
                    ) from exc
                raise
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            finally:  # gone once renamed; left by a failed write
                Path(tmp).unlink(missing_ok=True)
            _fsync_directory(target.parent)  # the rename
            for directory in created:  # each new directory's entry in its parent
                _fsync_directory(directory.parent)
        except OSError as exc:
            if exc.errno in _UNAVAILABLE_ERRNOS:
                # the path for the log and the CLI: the HTTP API answers a fixed message
                raise DatabaseUnavailableError(
                    f"cannot write artefact {digest} under {self.root}: {os_reason(exc)}"
                ) from exc
            raise StoreError(f"cannot write artefact {digest} under {self.root}: {exc}") from exc


def _not_a_directory(directory: Path, exc: OSError) -> str:
    """Why ``directory`` cannot be made or written into: the first of it and its parents
    that is there but is no directory (a regular file; a link whose target is missing or
    is no directory), else the system's reason."""
    for path in (*reversed(directory.parents), directory):
        if not os.path.lexists(path) or path.is_dir():
            continue
        if path.is_symlink():
            link = os.readlink(path)
            state = "is missing" if not path.exists() else "is not a directory"
            return f"{path} is not a directory: its link target {link} {state}"
        return f"{path} is not a directory: {_kind(path.stat().st_mode)} is in its place"
    return os_reason(exc)


def _kind(mode: int) -> str:
    return next((text for test, text in _KINDS if test(mode)), "a regular file")


def _read(root: Path, target: Path, sha256: str, *, max_bytes: int | None = None) -> bytes:
    """``target``'s content, which must hash to ``sha256`` (see :meth:`ArtefactStore.get`):
    a regular file (links followed) of at most ``max_bytes``."""
    try:
        data = _bounded_read(target, max_bytes)
    except FileNotFoundError as exc:
        raise NotFoundError(f"artefact {sha256} is missing from {root}") from exc
    except OSError as exc:
        raise StoreError(
            f"artefact {sha256} cannot be read from {target}: {os_reason(exc)}"
        ) from exc
    except _Unreadable as exc:
        raise StoreError(f"artefact {sha256} at {target} is damaged: {exc}") from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise StoreError(f"artefact {sha256} at {target} is corrupt: its content hash differs")
    return data


class _Unreadable(Exception):
    """What is at an artefact's path is no artefact: its message says why."""


def _bounded_read(target: Path, max_bytes: int | None) -> bytes:
    """The content of the regular file ``target`` (:func:`_open_regular`), read no further
    than its size when opened (a content-addressed file never changes) and ``_Unreadable``
    for a file larger than ``max_bytes`` (a sparse 6 GiB file stopped the daemon's
    start)."""
    fh, size = _open_regular(target)
    with fh:
        if max_bytes is not None and size > max_bytes:
            raise _Unreadable(
                f"it holds {size} bytes, more than an ONNX file can ({max_bytes}: protobuf's "
                "limit on one message)"
            )
        data = fh.read(size + 1)
    if len(data) > size:
        raise _Unreadable(f"it grew past its {size} bytes while read")
    return data


def _open_regular(target: Path) -> tuple[io.BufferedReader, int]:
    """``target`` opened to read, and its size: opened without blocking (a named pipe's
    open and read wait for a writer), ``_Unreadable`` for anything but a regular file in
    its place (a device: ``/dev/zero`` was read until a MemoryError)."""
    _check_regular(os.stat(target).st_mode)  # before opening: a device's open may act
    fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    fh = os.fdopen(fd, "rb")
    opened = os.fstat(fd)
    if not stat.S_ISREG(opened.st_mode):  # replaced since the stat
        fh.close()
        _check_regular(opened.st_mode)
    return fh, opened.st_size


def _check_regular(mode: int) -> None:
    if stat.S_ISDIR(mode):  # as opening it to read says
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
    if not stat.S_ISREG(mode):
        raise _Unreadable(f"it is not a regular file but {_kind(mode)}")


def _holds(target: Path, sha256: str, size: int) -> bool:
    """Whether ``target`` is a readable regular file of ``size`` bytes whose content
    hashes to ``sha256`` (hashed as it is read: the caller holds the bytes already)."""
    try:
        fh, found = _open_regular(target)
        with fh:
            return found == size and hashlib.file_digest(fh, "sha256").hexdigest() == sha256
    except (OSError, _Unreadable):  # missing, a directory, a pipe …: written (again)
        return False


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
