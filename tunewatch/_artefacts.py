"""Content-addressed artefact directory: a file's name is its SHA-256."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import tempfile
from pathlib import Path

from tunewatch._errors import NotFoundError, StoreError

logger = logging.getLogger(__name__)


class ArtefactStore:
    """Stores immutable blobs (ONNX files, reports) under ``root/<aa>/<sha256><suffix>``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str, suffix: str = ".onnx") -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"`sha256` must be 64 lowercase hex digits, got {sha256!r}")
        return self.root / sha256[:2] / f"{sha256}{suffix}"

    def put(self, data: bytes, suffix: str = ".onnx") -> str:
        """Write ``data`` durably (temp file, fsync, rename, fsync of the directory and of
        any directory created for it) and return its SHA-256. A file already under that
        name is kept only when its content matches it; a damaged one is replaced."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest, suffix)
        if _holds(target, digest):
            return digest
        if target.exists():
            logger.warning("artefact %s under %s is damaged; writing it again", digest, self.root)
        created = [d for d in (target.parent, *target.parent.parents) if not d.exists()]
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
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
            raise StoreError(f"cannot write artefact {digest} under {self.root}: {exc}") from exc
        return digest

    def get(self, sha256: str, suffix: str = ".onnx") -> bytes:
        """Read an artefact back, verifying its content still matches its name:
        ``NotFoundError`` when it is missing, ``StoreError`` when it is damaged or cannot
        be read (a directory in its place, no permission, an I/O error: the path and the
        system's reason in the message), so that a caller handling one model's fault
        handles every one."""
        target = self.path(sha256, suffix)
        try:
            data = target.read_bytes()
        except FileNotFoundError as exc:
            raise NotFoundError(f"artefact {sha256} is missing from {self.root}") from exc
        except OSError as exc:
            name = errno.errorcode.get(exc.errno) if exc.errno is not None else None
            reason = f"{exc.strerror or exc}" + (f" ({name})" if name else "")
            raise StoreError(f"artefact {sha256} cannot be read from {target}: {reason}") from exc
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StoreError(f"artefact {sha256} at {target} is corrupt: its content hash differs")
        return data


def _holds(target: Path, sha256: str) -> bool:
    """Whether ``target`` is a readable file whose content hashes to ``sha256``."""
    try:
        with target.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest() == sha256
    except OSError:  # missing, a directory, unreadable: written (again) by the caller
        return False


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
