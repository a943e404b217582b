"""Writing a bundle file in place: beside its destination, then renamed over it once it
is on disk and hashed, replacing only a regular file. Reading one: into a private copy as
it is hashed (:func:`private_copy`, :func:`copying`), the copy being what is imported."""

from __future__ import annotations

import io
import logging
import os
import stat
import tempfile
import uuid
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from tunewatch._bundle_archive import MANIFEST, BundleError, sha256_file

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

logger = logging.getLogger(__name__)


def private_copy(path: str | Path, directory: str | Path) -> BinaryIO:
    """An empty file for a copy of the bundle at ``path``, in ``directory`` where that is
    one (the data directory, where the import writes its artefacts), else the system's
    temporary directory: the owner's only (0600), with no name where the system allows
    (else unlinked once made), so gone once closed, however the import ends."""
    where = Path(directory)
    try:
        return tempfile.TemporaryFile(
            prefix=".tunewatch-import-", dir=where if where.is_dir() else None
        )
    except OSError as exc:
        raise BundleError(f"cannot copy bundle {str(path)!r} to import it: {exc.strerror}") from exc


class _Copying(io.RawIOBase):
    """Reads ``source``, writing each byte read to ``copy``: what was read is the copy."""

    def __init__(self, source: BinaryIO, copy: BinaryIO, path: str | Path) -> None:
        super().__init__()
        self._source, self._copy, self._path = source, copy, path

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        with memoryview(buffer) as view, view.cast("B") as out:
            data = self._source.read(len(out))
            out[: len(data)] = data
        try:
            self._copy.write(data)
        except OSError as exc:  # a full disk: not a read error
            raise BundleError(
                f"cannot copy bundle {str(self._path)!r} to import it: {exc.strerror}"
            ) from exc
        return len(data)


def copying(source: BinaryIO, copy: BinaryIO, path: str | Path) -> BinaryIO:
    """``source`` (the bundle at ``path``) to read from where it is, each byte read written
    to ``copy`` as well: hashed through this, ``copy`` holds exactly the bytes hashed,
    which a rewrite of the file at ``path`` meanwhile or after does not change."""
    return io.BufferedReader(_Copying(source, copy, path))


def write_zip(
    target: Path,
    manifest: str,
    members: Mapping[str, Callable[[], bytes]],
    *,
    record: Callable[[str], None],
) -> str:
    """Write the bundle beside ``target`` and rename it into place once it is on disk: a
    write that fails part-way (a full disk, an artefact that cannot be read) leaves
    whatever was at ``target`` as it was, and no partial file. A symlink at ``target`` is
    followed (its file is replaced, the link stays), and the partial file's name does not
    grow with ``target``'s. Only a regular file is replaced: a directory, a FIFO, a device
    or a socket there is refused (the rename put a world-writable regular file in place of
    a clone of ``/dev/null``). An existing file's permissions are kept (a private bundle
    stays private); a new bundle is the owner's only (0600), as the artefact store's own
    copies of the artefacts and reference snapshots it holds are. Each member's bytes are
    read (``members[name]()``) just before it is written and dropped once it is: the
    export holds one artefact at a time, not the bundle. The written file is read back and
    hashed, and ``record`` called with its SHA-256 (returned) before the rename: should it
    fail, the file goes, and nothing is at ``target`` that the source did not record."""
    if not target.name:  # "." or "/": no file to write, nor a name to write it beside
        raise BundleError(f"cannot write bundle {str(target)!r}: it names a directory")
    _refuse_non_regular(target, target)
    final = Path(os.path.realpath(target))
    try:
        mode = stat.S_IMODE(final.stat().st_mode) & 0o777  # no set-id or sticky bit
    except OSError:
        mode = 0o600  # a new file
    partial = final.with_name(f".tunewatch-export-{uuid.uuid4().hex[:16]}.partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise BundleError(f"cannot write bundle {str(target)!r}: {exc.strerror}") from exc
    replaced = False
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(MANIFEST, manifest)
                for name, read in members.items():
                    archive.writestr(name, read())
            f.flush()
            os.fsync(f.fileno())
        with open(partial, "rb") as written:  # the bytes on disk, as an import hashes them
            digest = sha256_file(written, target)
        _refuse_non_regular(target, final)  # again: the writing may have taken a while
        record(digest)
        os.replace(partial, final)
        replaced = True
    except OSError as exc:
        reason = exc.strerror or exc
        raise BundleError(f"cannot write bundle {str(target)!r}: {reason}") from exc
    finally:
        if not replaced:  # failed, refused or interrupted (Ctrl-C): the partial file goes
            try:
                partial.unlink(missing_ok=True)
            except OSError:
                logger.exception("could not remove the partial bundle %s", partial)
    return digest


def _refuse_non_regular(target: Path, path: Path) -> None:
    kind = non_regular_kind(path)
    if kind is not None:
        raise BundleError(
            f"cannot write bundle {str(target)!r}: it is {kind}, not a regular file, which "
            "the export would replace with one; nothing was written"
        )


_KINDS: tuple[tuple[Callable[[int], bool], str], ...] = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def non_regular_kind(path: str | Path) -> str | None:
    """What is at ``path``, links followed, where that is not a regular file ("a FIFO
    (named pipe)", "a character device" …); None for a regular file and where nothing is
    (a dangling link: a write creates its target), or where ``path`` cannot be looked up
    (the write says why)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "a special file")
