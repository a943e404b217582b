"""Where a backup (``tunewatch backup DIR``, see :mod:`tunewatch._backup`) is written, and
how it becomes ``DIR``: in a hidden directory beside ``DIR``, renamed onto it once
complete, so that a backup stopped part way leaves no ``DIR`` that looks complete.

The directory's name is ``.<name>.partial-`` and a random suffix (``mkdtemp``), not the
process id: ids repeat (a container's backup is pid 1 at each run), and a backup took the
partial directory of another, running, for a leftover of its own. A backup that completes
names, instead, each partial directory in ``DIR``'s folder: one to ``DIR`` by its name,
and one to any other ``DIR`` by the file marking a backup's partial directory
(:data:`MARKER`, removed before the rename), since backups are usually dated (``backup
/backups/$(date +%F)``) and no later one is to the ``DIR`` of a backup killed part way.
Each may be another backup's, still running, so none is deleted.

``DIR`` may not be a mount point, which the rename cannot replace: one is refused before
anything is written (``os.path.ismount``, or listed in ``/proc/self/mountinfo``: an empty
bind mount on the same filesystem passes the first), and a rename that fails still says
so, the partial directory removed.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

from tunewatch._backup_artefacts import WriteFailed, fsync_directory, private_file, reason
from tunewatch._errors import TunewatchError

#: An escaped character in a ``/proc/self/mountinfo`` path (a space is ``\040``).
_ESCAPED = re.compile(rb"\\([0-7]{3})")
#: The file in a partial directory that says it is a backup's, whatever ``DIR`` it is to.
MARKER = ".tunewatch-partial-backup"
#: What a partial directory's name holds between its ``DIR``'s name and its random suffix.
_PARTIAL = ".partial-"


def checked_destination(destination: Path, data_dir: Path) -> Path:
    """``destination`` resolved, if it may hold a backup: outside ``data_dir`` (a backup
    inside it would be copied into the next one, and lost with the disk it guards), not a
    mount point (the backup is renamed onto it from beside it: not across filesystems),
    not there or an empty directory (nothing of someone else's is replaced), and neither
    the working directory nor one holding it (the caller would be left in a removed
    directory)."""
    target = Path(os.path.realpath(destination))
    if target == data_dir or data_dir in target.parents:
        raise TunewatchError(
            f"backup directory {destination} is inside the data_dir {data_dir}: name one "
            "outside it (on another disk, ideally); nothing was written",
            code="invalid_argument",
        )
    if target.exists():
        if not target.is_dir():
            raise TunewatchError(
                f"backup directory {destination} is a file, not a directory: name a "
                "directory that does not exist or is empty; nothing was written",
                code="invalid_argument",
            )
        _refuse_working_directory(destination, target)
        if _mounted(target):
            raise TunewatchError(
                f"{_mount_point(destination)}; nothing was written", code="invalid_argument"
            )
        if any(target.iterdir()):
            raise TunewatchError(
                f"backup directory {destination} is not empty: name a directory that does "
                "not exist or is empty; nothing was written",
                code="invalid_argument",
            )
    else:
        there = next(folder for folder in target.parents if folder.exists())
        if not there.is_dir():
            raise TunewatchError(
                f"backup directory {destination} cannot be made: {there} is a file, not a "
                "directory: name a directory that does not exist or is empty; nothing was "
                "written",
                code="invalid_argument",
            )
    return target


def _refuse_working_directory(destination: Path, target: Path) -> None:
    """Refuse ``target`` (resolved, a directory) if it is the working directory or holds
    it: the rename onto it would leave the caller in a removed directory (``mkdir d && cd d
    && tunewatch backup . && tar czf ../d.tgz .`` archived nothing)."""
    try:
        here = os.path.realpath(os.getcwd())
    except OSError:  # the working directory was removed: DIR cannot be it
        return
    named = str(destination) if str(destination) == str(target) else f"{destination} ({target})"
    if os.path.samefile(target, here):
        raise TunewatchError(
            f"backup directory {named} is the working directory: the backup is written "
            "beside it and renamed onto it, which would leave this shell in a removed "
            "directory; name it from outside it (cd .. first); nothing was written",
            code="invalid_argument",
        )
    if os.path.commonpath([target, here]) == str(target):
        raise TunewatchError(
            f"backup directory {named} holds the working directory {here}: the backup is "
            "written beside it and renamed onto it; name it from outside it (cd "
            f"{target.parent} first); nothing was written",
            code="invalid_argument",
        )


def make_partial(destination: Path, target: Path) -> Path:
    """Make the directory the backup is written in, ``.<name>.partial-<random>`` beside
    ``target`` (the same filesystem: it is renamed onto ``target`` when complete), the
    owner's only and holding :data:`MARKER`, and ``target``'s parents (as the umask makes
    them)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TunewatchError(
            f"cannot create {target.parent}, the folder of the backup directory "
            f"{destination}: {reason(exc)}; nothing was written",
            code="backup_failed",
        ) from exc
    try:
        partial = Path(tempfile.mkdtemp(prefix=_prefix(target), dir=target.parent))
    except OSError as exc:
        raise TunewatchError(
            f"cannot create a directory in {target.parent}, where the backup {destination} "
            f"is written before it is renamed onto it (the folder must be writable): "
            f"{reason(exc)}; nothing was written",
            code="backup_failed",
        ) from exc
    try:
        partial.chmod(0o700)  # mkdtemp's mode, whatever the umask took from it
    except OSError as exc:
        raise TunewatchError(
            f"cannot make {partial}, where the backup {destination} is written, the "
            f"owner's only: {reason(exc)}; {discard(partial)}",
            code="backup_failed",
        ) from exc
    try:
        with private_file(partial / MARKER) as marker:
            marker.write(
                f"a partial backup to {target} (tunewatch backup), renamed onto it once "
                "complete: left by a backup stopped part way unless one still runs\n".encode()
            )
    except OSError as exc:
        raise TunewatchError(
            f"cannot write {partial / MARKER}, which marks where the backup {destination} is "
            f"written: {reason(exc)}; {discard(partial)}",
            code="backup_failed",
        ) from exc
    return partial


def publish(destination: Path, partial: Path, target: Path) -> None:
    """Rename the complete backup ``partial`` onto ``target`` (which is not there or is an
    empty directory: ``rename`` replaces an empty one), durably, its :data:`MARKER` removed
    first. ``TunewatchError`` when the rename fails, ``partial`` removed first;
    ``WriteFailed`` when ``partial`` cannot be made durable."""
    try:
        (partial / MARKER).unlink(missing_ok=True)
        fsync_directory(partial)
    except OSError as exc:
        why = reason(exc, named=str(partial))
        raise WriteFailed(f"renaming the complete backup {partial} onto it", why) from exc
    try:
        os.rename(partial, target)
    except OSError as exc:
        removed = discard(partial)
        why = reason(exc, named=str(partial))
        if exc.errno in (errno.EBUSY, errno.EXDEV):
            said = _mount_point(destination)
        elif exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            said = (
                f"backup directory {destination} is not empty any more (another backup to "
                "it, run meanwhile?): name a directory that does not exist or is empty"
            )
        else:
            said = f"backup directory {destination} cannot be replaced"
        raise TunewatchError(
            f"cannot rename the complete backup onto {destination}: {why}: {said}; {removed}",
            code="backup_failed",
        ) from exc
    try:
        fsync_directory(target.parent)
    except OSError as exc:
        raise TunewatchError(
            f"the backup {destination} was written, but its name may not survive a crash: "
            f"cannot flush its folder {target.parent}: {reason(exc)}",
            code="backup_failed",
        ) from exc


def discard(partial: Path) -> str:
    """Remove the partial backup ``partial``; what became of it."""
    shutil.rmtree(partial, ignore_errors=True)
    if os.path.lexists(partial):
        return f"the partial backup {partial} could not all be removed: delete it"
    return "the partial backup was removed"


def leftover_partials(target: Path) -> tuple[Path, ...]:
    """The partial directories in ``target``'s folder (its own renamed onto it): each left
    by a backup stopped part way, or one still running. Those to ``target`` by their name
    (a backup before the marker left them unmarked), those to any other ``DIR`` by their
    :data:`MARKER`; :func:`partial_destination` says which ``DIR`` each is to."""
    prefix = _prefix(target)
    try:
        entries = list(os.scandir(target.parent))
    except OSError:  # it was just renamed into: nothing to say if it cannot be read
        return ()
    return tuple(
        sorted(
            target.parent / entry.name
            for entry in entries
            if entry.name.startswith(".")
            and _PARTIAL in entry.name
            and entry.is_dir(follow_symlinks=False)
            and (entry.name.startswith(prefix) or os.path.isfile(Path(entry.path, MARKER)))
        )
    )


def partial_destination(partial: Path) -> Path:
    """The ``DIR`` the partial directory ``partial`` (``.<name>.partial-<random>``) is to."""
    return partial.with_name(partial.name[1:].rpartition(_PARTIAL)[0])


def _prefix(target: Path) -> str:
    return f".{target.name}{_PARTIAL}"


def _mount_point(destination: Path) -> str:
    return (
        f"backup directory {destination} is a mount point: the backup is written beside it "
        "and renamed onto it, which cannot replace a mount point or cross filesystems; name "
        f"a directory inside it, such as {destination / 'tunewatch-backup'}"
    )


def _mounted(target: Path) -> bool:
    """Whether ``target`` (resolved) is a mount point: on a filesystem of its own, or listed
    in ``/proc/self/mountinfo`` (a bind mount of the filesystem it lies on)."""
    if os.path.ismount(target):
        return True
    try:
        with open("/proc/self/mountinfo", "rb") as mounts:
            lines = mounts.read().splitlines()
    except OSError:  # no /proc: the check above is all there is
        return False
    wanted = os.fsencode(target)
    for line in lines:
        fields = line.split(b" ")
        if len(fields) > 4:
            point = _ESCAPED.sub(lambda m: bytes([int(m[1], 8)]), fields[4])
            if point == wanted:
                return True
    return False
