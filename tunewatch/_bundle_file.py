"""Writing a bundle file in place: beside its destination, then renamed over it once it
is on disk and hashed, replacing only a regular file."""

from __future__ import annotations

import logging
import os
import stat
import uuid
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

from tunewatch._bundle_archive import MANIFEST, BundleError, sha256_file

logger = logging.getLogger(__name__)


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
