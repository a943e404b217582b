"""A consistent online backup of the embedded (SQLite) store, taken while the daemon
serves: ``tunewatch backup DIR``.

Copying the files of a live data directory is not a backup: ``cp -r`` of the store (in
WAL mode) while the daemon recorded gave copies that failed ``integrity_check``, broke
foreign keys or lacked requests the daemon had acknowledged (4 of 35 under load). The
store is copied with ``VACUUM INTO`` instead: one read transaction, so the copy is one
committed state, and in WAL mode the daemon's writers never wait for it. (SQLite's
online backup API, ``sqlite3 .backup``, starts again at each write another connection
commits: constant recording starved it.)

The order makes the parts agree: the store first; then the tuning storage, which is
written after the store names a job's study, so it holds every study the copy names;
then the artefacts, which are written before the rows naming them and never deleted, so
the directory copied after the snapshot holds every artefact the snapshot names.

``DIR`` is a data directory: a daemon or command given ``data_dir: DIR`` opens it.
Everything in it is the owner's only (files 0600, directories 0700): the store holds
token hashes and scored inputs. Not copied: ``reports/`` (rebuilt from the store on
request), ``worker-config.yaml`` (written at each daemon start) and the demo's marker
(``tunewatch demo`` clears a directory holding it).

A PostgreSQL store is refused: ``pg_dump`` backs it up, artefacts included (the store
keeps their bytes since schema revision 0014).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from sqlalchemy.engine import make_url

from tunewatch._artefacts import ArtefactStore
from tunewatch._config import Config
from tunewatch._config_paths import STORE_FILE
from tunewatch._errors import StoreError, TunewatchError
from tunewatch.store import redact_url
from tunewatch.store._engine import parse_store_url, sqlite_file

#: The artefact directory's name in a data directory (``Config.artefact_dir``).
ARTEFACTS = "artefacts"
#: An artefact's file name: its SHA-256 and its suffix (``tunewatch._artefacts``).
_ARTEFACT_NAME = re.compile(r"[0-9a-f]{64}\.[a-z0-9]{1,15}")
#: How much of an Optuna journal file is read at a time.
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupFile:
    """One database written to the backup: ``name`` under its directory, the ``part`` of
    the deployment it is, and ``what`` copy of it."""

    name: str
    part: Literal["store", "tuning storage"]
    what: str
    size_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupResult:
    """What :func:`backup` wrote to ``directory``, and what it did not.

    ``damaged``: artefacts left out, each with why (corrupt or unreadable in the data
    directory; a copy would be as damaged). ``not_copied``: what the backup does not hold
    that a restore may need, each with where to get it."""

    directory: Path
    files: tuple[BackupFile, ...]
    artefacts: int
    artefact_bytes: int
    damaged: tuple[str, ...]
    not_copied: tuple[str, ...]


def backup(config: Config, destination: Path) -> BackupResult:
    """Write a backup of ``config``'s SQLite store, its tuning storage when that is a file
    under ``data_dir``, and its artefacts to ``destination``, which must not exist or be
    an empty directory, outside ``data_dir``. ``TunewatchError`` (nothing written) for a
    PostgreSQL store, a store that does not exist or a destination refused; a backup
    that fails part way (``StoreError``, ``OSError``) is removed, ``destination`` left as
    it was found."""
    store_file = _store_file(config)
    data_dir = Path(config.data_dir).resolve()
    target = _checked_destination(destination, data_dir)
    if not store_file.is_file():
        raise TunewatchError(
            f"no store at {store_file}: pass --config (or set $TUNEWATCH_CONFIG) naming the "
            "daemon's configuration; nothing was written",
            code="no_store",
        )
    created = _make_destination(target)
    try:
        timeout_s = config.store.lock_timeout_s
        files = [
            BackupFile(
                name=STORE_FILE,
                part="store",
                what="the store, a snapshot (VACUUM INTO)",
                size_bytes=_snapshot(store_file, target / STORE_FILE, timeout_s=timeout_s),
            )
        ]
        tuning, not_copied = _tuning_storage(config, data_dir, target, timeout_s=timeout_s)
        files += tuning
        count, size, damaged = _copy_artefacts(config.artefact_dir, target / ARTEFACTS)
        _fsync_directory(target)
        if created:
            _fsync_directory(target.parent)
    except StoreError as exc:
        _discard(target, created=created)
        raise StoreError(f"{exc.message}; the partial backup was removed") from exc
    except BaseException:  # an OSError (a full disk), an interrupt: none of it is kept
        _discard(target, created=created)
        raise
    return BackupResult(
        directory=target,
        files=tuple(files),
        artefacts=count,
        artefact_bytes=size,
        damaged=damaged,
        not_copied=not_copied,
    )


def _store_file(config: Config) -> Path:
    """The store's SQLite file, else ``TunewatchError`` saying what backs it up."""
    url = config.store_url
    if parse_store_url(url).get_backend_name() != "sqlite":
        raise TunewatchError(
            f"`backup` copies an embedded SQLite store; the store at {redact_url(url)} is "
            "PostgreSQL: back it up with `pg_dump`, which holds the artefacts too (the store "
            "keeps them since revision 0014), and the tuning storage (`tuning.storage_url`) "
            "with it; nothing was written",
            code="invalid_argument",
        )
    database = sqlite_file(url)
    if database is None:
        raise TunewatchError(
            f"`store.url` {redact_url(url)} names no SQLite file `backup` can open (a `file:` "
            "URI): name the file, sqlite:////path/tunewatch.db; nothing was written",
            code="invalid_argument",
        )
    return Path(database).resolve()


def _checked_destination(destination: Path, data_dir: Path) -> Path:
    """``destination`` resolved, if it may hold a backup: outside ``data_dir`` (a backup
    inside it would be copied into the next one, and lost with the disk it guards), and
    not there or an empty directory (nothing of someone else's is replaced)."""
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
        if any(target.iterdir()):
            raise TunewatchError(
                f"backup directory {destination} is not empty: name a directory that does "
                "not exist or is empty; nothing was written",
                code="invalid_argument",
            )
    return target


def _make_destination(target: Path) -> bool:
    """Make ``target`` the owner's only (0700), creating it (and its parents, as the
    umask makes them) when it is not there; whether it was created."""
    if target.is_dir():
        target.chmod(0o700)
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    _private_directory(target)
    return True


def _discard(target: Path, *, created: bool) -> None:
    """Remove what a failed backup wrote: ``target`` when it made it, else what it wrote
    into it (empty before: every entry is the backup's)."""
    if created:
        shutil.rmtree(target, ignore_errors=True)
        return
    for entry in target.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _snapshot(source: Path, target: Path, *, timeout_s: float) -> int:
    """Write ``VACUUM INTO`` of the SQLite database ``source`` to ``target``, check it
    (``quick_check``), make it 0600 and durable; its size in bytes. ``source`` is opened
    ``mode=rw``: never created (a missing file is an error, not an empty copy), and
    ``timeout_s`` is how long it waits for a lock (a rollback-journal database, such as
    Optuna's, being written)."""
    try:
        conn = sqlite3.connect(
            f"{source.as_uri()}?mode=rw", uri=True, timeout=timeout_s, isolation_level=None
        )
        try:
            conn.execute("VACUUM INTO ?", (str(target),))
        finally:
            conn.close()
        check = sqlite3.connect(f"{target.as_uri()}?mode=ro", uri=True, isolation_level=None)
        try:
            verdict = [row[0] for row in check.execute("PRAGMA quick_check")]
        finally:
            check.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot copy the database {source} to {target}: {exc}") from exc
    if verdict != ["ok"]:
        raise StoreError(
            f"the copy of {source} at {target} failed its check (PRAGMA quick_check): "
            f"{'; '.join(map(str, verdict[:3]))}"
        )
    target.chmod(0o600)
    _fsync_file(target)
    return target.stat().st_size


def _tuning_storage(
    config: Config, data_dir: Path, target: Path, *, timeout_s: float
) -> tuple[list[BackupFile], tuple[str, ...]]:
    """Copy the tuning (Optuna) storage when it is a file under ``data_dir`` (the default
    ``optuna.db``, or a SQLite file or journal configured there) to the same place under
    ``target``; else say why it was not copied."""
    url = config.tuning_storage_url
    journal = "://" not in url
    if journal:
        path: Path | None = Path(url).expanduser()
    else:
        database = sqlite_file(url) if make_url(url).get_backend_name() == "sqlite" else None
        path = None if database is None else Path(database)
    if path is None:
        return [], (
            f"the tuning storage at {redact_url(url)} is not a file: back it up with its "
            "database's own tool (pg_dump for PostgreSQL)",
        )
    path = Path(os.path.realpath(path))
    if data_dir not in path.parents:
        return [], (
            f"the tuning storage {path} lies outside the data_dir: back it up on its own "
            "(SQLite: VACUUM INTO; an Optuna journal: its complete lines)",
        )
    if not path.is_file():
        return [], (f"the tuning storage {path} does not exist yet: no job has tuned",)
    name = path.relative_to(data_dir)
    for folder in reversed(name.parents[:-1]):  # the ones between target and the file
        _private_directory(target / folder)
    if journal:
        size = _copy_journal(path, target / name)
        what = "the tuning storage, its complete lines (an Optuna journal)"
    else:
        size = _snapshot(path, target / name, timeout_s=timeout_s)
        what = "the tuning storage, a snapshot (VACUUM INTO)"
    return [BackupFile(name=name.as_posix(), part="tuning storage", what=what, size_bytes=size)], ()


def _copy_journal(source: Path, target: Path) -> int:
    """Copy the complete lines of the Optuna journal ``source`` to ``target`` (0600,
    durable); its size in bytes. Optuna appends one operation per line and reads a
    journal as its complete lines: a line being appended while this reads is left out,
    as Optuna's own reader leaves it."""
    try:
        with source.open("rb") as src, _private_file(target) as out:
            size = os.fstat(src.fileno()).st_size  # a later append is not waited for
            kept = 0
            while kept < size:
                chunk = src.read(min(_CHUNK, size - kept))
                if not chunk:
                    break
                out.write(chunk)
                kept += len(chunk)
            tail = _last_newline_end(out, kept)
            out.truncate(tail)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        raise StoreError(f"cannot copy the tuning journal {source} to {target}: {exc}") from exc
    return tail


def _last_newline_end(out: BinaryIO, size: int) -> int:
    """The offset just past the last ``\\n`` in the first ``size`` bytes of the file
    ``out`` (open for reading and writing), 0 when there is none."""
    end = size
    while end > 0:
        start = max(0, end - _CHUNK)
        out.seek(start)
        block = out.read(end - start)
        at = block.rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0


def _copy_artefacts(source: Path, target: Path) -> tuple[int, int, tuple[str, ...]]:
    """Copy every artefact under ``source`` (``<aa>/<sha256><suffix>``) to ``target``,
    each read back through its content hash first: how many were copied, their bytes,
    and the damaged ones left out, each with why. Other files (a write's temporary file)
    are not artefacts, and not copied."""
    if not source.is_dir():  # nothing registered yet
        return 0, 0, ()
    _private_directory(target)
    artefacts = ArtefactStore(source)  # no store: the directory is the only copy
    count, size, damaged = 0, 0, []
    for folder in sorted(source.iterdir()):
        if not folder.is_dir() or folder.is_symlink():
            continue
        names = sorted(
            entry.name
            for entry in folder.iterdir()
            if _ARTEFACT_NAME.fullmatch(entry.name) and entry.name.startswith(folder.name)
        )
        if names and not (target / folder.name).exists():
            _private_directory(target / folder.name)
        for name in names:
            try:
                data = artefacts.get(name[:64], name[64:])
            except StoreError as exc:  # NotFoundError too: it vanished
                damaged.append(f"artefact {name}: {exc.message}")
                continue
            with _private_file(target / folder.name / name) as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            count, size = count + 1, size + len(data)
        if names:
            _fsync_directory(target / folder.name)
    _fsync_directory(target)
    return count, size, tuple(damaged)


def _private_directory(path: Path) -> None:
    path.mkdir(mode=0o700)
    path.chmod(0o700)  # whatever the umask


@contextlib.contextmanager
def _private_file(path: Path) -> Iterator[BinaryIO]:
    """``path`` created (never replaced) 0600 and open for reading and writing."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w+b") as out:
        yield out


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
