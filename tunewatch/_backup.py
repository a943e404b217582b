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
the directory copied after the snapshot holds every artefact the snapshot names (each is
checked: see :mod:`tunewatch._backup_artefacts`).

The backup is built in a hidden directory beside ``DIR`` (``.<name>.partial-<random>``,
0700) and renamed onto ``DIR`` once everything in it is written and durable: a backup
killed part way (kill -9, a crash) leaves no ``DIR`` that looks complete, only that
directory, to be deleted, which the next backup in ``DIR``'s folder names. A failure it
sees (a full disk) or an interrupt (Ctrl-C; SIGTERM, which ``tunewatch backup`` turns into
an exit) removes it. See :mod:`tunewatch._backup_partial`.

A SQLite statement is one C call, and Python runs a signal handler only between bytecodes:
SIGTERM sent while ``VACUUM INTO`` copied a 1.1 GB store was acted on once the copy had
finished, 9.5 s later (a container stop's SIGKILL, 2 s after it, left the partial backup).
So a backup takes a ``stop`` event, which each SQLite connection it opens polls (a progress
handler): once it is set, the statement fails as interrupted (``StoreError``) within
milliseconds, and the partial backup is removed.

``DIR`` is a data directory: a daemon or command given ``data_dir: DIR`` opens it.
Everything in it is the owner's only (files 0600, directories 0700, while it is written
too): the store holds token hashes and scored inputs. Not copied: ``reports/`` (rebuilt
from the store on request), the tuning workers' configurations
(``worker-config.<pid>.<random>.yaml``, each written by its daemon as it starts, holding the
store URL) and the demo's marker (``tunewatch demo`` clears a directory holding it).

Each backup is audited in both stores, as a restore would otherwise leave no trace: a store
restored from a backup verified ``audit chain intact`` and ended where the backup was
taken, a token revoked since answering again, and neither log said a backup was taken.
The copy gets a ``backup_snapshot`` entry, appended to it (chained, the head moved) after
``VACUUM INTO`` and before its check, so a restored log ends saying it is a snapshot:
when, of which store, by whom, and the head entry it copied. Once the backup is renamed
into place the source gets a ``backup`` entry naming the same head and the copy's entry
by its hash. A backup that fails before leaves no entry in the source; one whose
``backup`` entry cannot be appended is removed (a backup the source's log does not name
cannot be accounted for).

A PostgreSQL store is refused: ``pg_dump`` backs it up, artefacts included (the store
keeps their bytes since schema revision 0014).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Literal

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tunewatch._backup_artefacts import (
    ARTEFACTS,
    Part,
    WriteFailed,
    copy_artefacts,
    fsync_file,
    missing_artefacts,
    private_directory,
    private_file,
    writing,
)
from tunewatch._backup_partial import (
    checked_destination,
    discard,
    leftover_partials,
    make_partial,
    publish,
)
from tunewatch._config import Config
from tunewatch._config_paths import STORE_FILE
from tunewatch._errors import StoreError, TunewatchError
from tunewatch.store import Store, redact_url
from tunewatch.store._audit import append_audit_in, audit_log
from tunewatch.store._engine import parse_store_url, sqlite_file, transaction

#: How much of an Optuna journal file is read at a time.
_CHUNK = 1 << 20
#: SQLite virtual-machine instructions between two looks at a backup's ``stop`` event: a
#: few hundred rows of a copy, well under a millisecond of a store's.
_POLL_EVERY = 1000
#: What SQLite keeps beside a database (its rollback journal, write-ahead log and the
#: log's index): a crash leaves them, and SQLite replays them onto whatever file then
#: has the database's name.
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupFile:
    """One database written to the backup: ``name`` under its directory, the ``part`` of
    the deployment it is, and ``what`` copy of it. ``source``: the file it was copied
    from, the one the configuration opens, which a restore replaces (``data_dir / name``
    unless configured elsewhere). ``sidecars``: the files beside ``source`` a restore
    deletes first (a crash's journal or write-ahead log, which SQLite would replay onto
    the copy)."""

    name: str
    part: Part
    what: str
    size_bytes: int
    source: Path
    sidecars: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupResult:
    """What :func:`backup` wrote to ``directory``, and what it did not.

    ``damaged``: artefacts left out, each with why (corrupt or unreadable in the data
    directory; a copy would be as damaged). ``missing``: artefacts the store's copy names
    that the data directory does not hold, each with what names it. ``not_copied``: what
    the backup does not hold that a restore may need, each with where to get it.
    ``leftovers``: the partial directories in ``directory``'s folder other backups left
    (stopped part way, or still running), to it or to another directory there."""

    directory: Path
    files: tuple[BackupFile, ...]
    artefacts: int
    artefact_bytes: int
    damaged: tuple[str, ...]
    missing: tuple[str, ...]
    not_copied: tuple[str, ...]
    leftovers: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Snapshot:
    """What the copy's ``backup_snapshot`` entry says, which the source's ``backup`` entry
    repeats: when the copy was taken (just before ``VACUUM INTO`` began), the newest
    entry it copied (``None`` for an empty log), and the hash of its own entry."""

    taken_at: str
    head_id: int | None
    head_hash: str | None
    entry_hash: str


def backup(
    config: Config, destination: Path, *, actor: str, stop: threading.Event | None = None
) -> BackupResult:
    """Write a backup of ``config``'s SQLite store, its tuning storage when that is a file
    under ``data_dir``, and its artefacts to ``destination``, which must not exist or be
    an empty directory (not a mount point), outside ``data_dir``. ``TunewatchError``
    (nothing written) for a PostgreSQL store, a store that does not exist or a
    destination refused. The backup is written beside ``destination`` and renamed onto it
    when complete; one that fails part way (``StoreError``, ``TunewatchError`` naming the
    part and the file for an ``OSError``) is removed, ``destination`` left as it was
    found. ``stop`` set (by a signal handler) stops a SQLite copy in progress: it fails
    (``StoreError``, the statement interrupted) and the backup is removed.

    Audited by ``actor`` in both stores: ``backup_snapshot`` in the copy, ``backup`` in
    the source once the backup is in place. A backup whose ``backup`` entry cannot be
    appended is removed (``StoreError`` saying so)."""
    stop = stop if stop is not None else threading.Event()
    store_file = _store_file(config)
    data_dir = Path(config.data_dir).resolve()
    target = checked_destination(destination, data_dir)
    if not store_file.is_file():
        raise TunewatchError(
            f"no store at {store_file}: pass --config (or set $TUNEWATCH_CONFIG) naming the "
            "daemon's configuration; nothing was written",
            code="no_store",
        )
    partial = make_partial(destination, target)
    published = False
    try:
        timeout_s = config.store.lock_timeout_s
        taken_at = datetime.now(UTC).isoformat()
        with writing("store", STORE_FILE):
            _vacuum_into(store_file, partial / STORE_FILE, timeout_s=timeout_s, stop=stop)
            snapshot = _mark_snapshot(
                partial / STORE_FILE,
                store=store_file,
                directory=target,
                actor=actor,
                taken_at=taken_at,
            )
            size = _checked(store_file, partial / STORE_FILE, stop=stop)
        files = [
            BackupFile(
                name=STORE_FILE,
                part="store",
                what="the store, a snapshot (VACUUM INTO)",
                size_bytes=size,
                source=store_file,
                sidecars=_sidecars(store_file),
            )
        ]
        tuning, not_copied = _tuning_storage(
            config.tuning_storage_url, data_dir, partial, timeout_s=timeout_s, stop=stop
        )
        files += tuning
        archive = config.tuning_archive_url
        if archive is not None:  # after the storage: a study archived between the two
            # copies was copied to the archive before it left the storage, so it is in one
            archived, archive_not_copied = _tuning_storage(
                archive, data_dir, partial, timeout_s=timeout_s, stop=stop, part="tuning archive"
            )
            files += archived
            not_copied += archive_not_copied
        with writing("artefacts", f"{ARTEFACTS}/"):
            copied = copy_artefacts(config.artefact_dir, partial / ARTEFACTS)
        with writing("artefacts", f"those {STORE_FILE} names"):
            missing = missing_artefacts(
                partial / STORE_FILE,
                partial / ARTEFACTS,
                source=config.artefact_dir,
                left_out=copied.left_out,
            )
        publish(destination, partial, target)
        _audit_backup(config, store_file, target, partial, actor=actor, snapshot=snapshot)
        published = True
    except WriteFailed as exc:
        removed = discard(partial)
        message = f"cannot write the backup {destination}: {exc.what}: {exc.reason}; {removed}"
        if isinstance(exc.__cause__, StoreError):
            raise StoreError(message) from exc.__cause__
        raise TunewatchError(message, code="backup_failed") from exc.__cause__
    finally:
        if not published:  # failed, interrupted or the rename refused: none of it is kept
            discard(partial)
    return BackupResult(
        directory=target,
        files=tuple(files),
        artefacts=copied.count,
        artefact_bytes=copied.size_bytes,
        damaged=copied.damaged,
        missing=missing,
        not_copied=not_copied,
        leftovers=leftover_partials(target),
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


def _mark_snapshot(
    copy: Path, *, store: Path, directory: Path, actor: str, taken_at: str
) -> _Snapshot:
    """Append the ``backup_snapshot`` entry by ``actor`` to the audit log of ``copy``,
    the store's copy (nothing else has it open), through the store's own append: it
    chains onto the head copied and moves the head. The copy is opened by a connection
    of this module's (its path may hold what a URL cannot, ``?`` or ``#``); SQLite
    leaves no journal beside it once it is closed."""
    engine = create_engine(
        "sqlite://",
        creator=lambda: sqlite3.connect(f"{copy.as_uri()}?mode=rw", uri=True),
        poolclass=NullPool,
    )
    try:
        with transaction(engine, "backup_snapshot") as conn:
            newest = audit_log(conn, 1)
            head_id, head_hash = (newest[0].id, newest[0].hash) if newest else (None, None)
            entry = append_audit_in(
                conn,
                actor=actor,
                action="backup_snapshot",
                target=str(directory),
                details={
                    "taken_at": taken_at,
                    "store": str(store),
                    "head_id": head_id,
                    "head_hash": head_hash,
                },
            )
    finally:
        engine.dispose()
    return _Snapshot(taken_at=taken_at, head_id=head_id, head_hash=head_hash, entry_hash=entry.hash)


def _audit_backup(
    config: Config,
    store_file: Path,
    target: Path,
    partial: Path,
    *,
    actor: str,
    snapshot: _Snapshot,
) -> None:
    """Append the ``backup`` entry by ``actor`` to the source's audit log, once the backup
    is in place at ``target``; if it cannot be appended (or the command is stopped), the
    backup is taken back to ``partial`` and removed: a backup the source's log does not
    name cannot be accounted for."""
    try:
        with Store(
            config.store_url,
            sqlite_synchronous=config.store.sqlite_synchronous,
            lock_timeout_s=config.store.lock_timeout_s,
        ) as store:  # not migrated: a backup taken before an upgrade leaves the schema
            store.append_audit(
                actor=actor,
                action="backup",
                target=str(target),
                details={
                    "taken_at": snapshot.taken_at,
                    "head_id": snapshot.head_id,
                    "head_hash": snapshot.head_hash,
                    "snapshot_hash": snapshot.entry_hash,
                },
            )
    except StoreError as exc:
        removed = _withdraw(target, partial)
        raise StoreError(
            f"cannot record the backup {target} in the audit log of the store at "
            f"{store_file}: {exc.message}; {removed} (a backup the store's audit log does "
            "not name cannot be accounted for): run it again"
        ) from exc
    except BaseException:  # cleanup only (Ctrl-C, SIGTERM): re-raised as it was
        _withdraw(target, partial)
        raise


def _withdraw(target: Path, partial: Path) -> str:
    """Remove the backup published at ``target``, renamed back to ``partial`` first so that
    a crash part way leaves no ``target`` that looks complete; what became of it."""
    try:
        os.rename(target, partial)
    except OSError:  # removed where it is, then
        partial = target
    discard(partial)
    if os.path.lexists(partial):
        return f"the backup {partial} could not all be removed: delete it"
    return "the backup was removed"


def _snapshot(source: Path, target: Path, *, timeout_s: float, stop: threading.Event) -> int:
    """Write ``VACUUM INTO`` of the SQLite database ``source`` to ``target`` and check it
    (:func:`_vacuum_into`, :func:`_checked`); its size in bytes."""
    _vacuum_into(source, target, timeout_s=timeout_s, stop=stop)
    return _checked(source, target, stop=stop)


def _vacuum_into(source: Path, target: Path, *, timeout_s: float, stop: threading.Event) -> None:
    """Write ``VACUUM INTO`` of the SQLite database ``source`` to ``target`` (created
    0600 first: a copy stopped part way is the owner's only too). ``source`` is opened
    ``mode=rw``: never created (a missing file is an error, not an empty copy), and
    ``timeout_s`` is how long it waits for a lock (a rollback-journal database, such as
    Optuna's, being written). Fails (``StoreError``) once ``stop`` is set."""
    with private_file(target):
        pass  # VACUUM INTO writes into an empty file, keeping its mode
    try:
        conn = sqlite3.connect(
            f"{source.as_uri()}?mode=rw", uri=True, timeout=timeout_s, isolation_level=None
        )
        try:
            conn.set_progress_handler(stop.is_set, _POLL_EVERY)
            conn.execute("VACUUM INTO ?", (str(target),))
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot copy the database {source}: {exc}") from exc


def _checked(source: Path, target: Path, *, stop: threading.Event) -> int:
    """Check ``target``, the copy of ``source`` (``quick_check``), and make it durable; its
    size in bytes. Fails (``StoreError``) once ``stop`` is set."""
    try:
        check = sqlite3.connect(f"{target.as_uri()}?mode=ro", uri=True, isolation_level=None)
        try:
            check.set_progress_handler(stop.is_set, _POLL_EVERY)
            verdict = [row[0] for row in check.execute("PRAGMA quick_check")]
        finally:
            check.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot copy the database {source}: {exc}") from exc
    if verdict != ["ok"]:
        raise StoreError(
            f"the copy of {source} failed its check (PRAGMA quick_check): "
            f"{'; '.join(map(str, verdict[:3]))}"
        )
    fsync_file(target)
    return target.stat().st_size


def _tuning_storage(
    url: str,
    data_dir: Path,
    target: Path,
    *,
    timeout_s: float,
    stop: threading.Event,
    part: Literal["tuning storage", "tuning archive"] = "tuning storage",
) -> tuple[list[BackupFile], tuple[str, ...]]:
    """Copy the tuning (Optuna) storage at ``url`` when it is a file under ``data_dir``
    (the default ``optuna.db``, or a SQLite file or journal configured there) to the same
    place under ``target``; else say why it was not copied. The archive of old studies
    (``part``: ``tuning archive``, default ``optuna-archive.db``) likewise."""
    noun = "the tuning storage" if part == "tuning storage" else "the archive of old studies"
    journal = "://" not in url
    if journal:
        path: Path | None = Path(url).expanduser()
    else:
        database = sqlite_file(url) if make_url(url).get_backend_name() == "sqlite" else None
        path = None if database is None else Path(database)
    if path is None:
        return [], (
            f"{noun} at {redact_url(url)} is not a file: back it up with its database's own "
            "tool (pg_dump for PostgreSQL)",
        )
    path = Path(os.path.realpath(path))
    if data_dir not in path.parents:
        return [], (
            f"{noun} {path} lies outside the data_dir: back it up on its own (SQLite: "
            "VACUUM INTO; an Optuna journal: its complete lines)",
        )
    if not path.is_file():
        if part == "tuning archive":  # no study is old enough yet: nothing to say
            return [], ()
        return [], (f"{noun} {path} does not exist yet: no job has tuned",)
    name = path.relative_to(data_dir)
    with writing(part, name.as_posix()):
        for folder in reversed(name.parents[:-1]):  # the ones between target and the file
            private_directory(target / folder)
        if journal:
            size = _copy_journal(path, target / name)
        else:
            size = _snapshot(path, target / name, timeout_s=timeout_s, stop=stop)
    sidecars: tuple[Path, ...] = ()
    if journal:
        what = f"{noun}, its complete lines (an Optuna journal)"
    else:
        what = f"{noun}, a snapshot (VACUUM INTO)"
        sidecars = _sidecars(path)
    copy = BackupFile(
        name=name.as_posix(),
        part=part,
        what=what,
        size_bytes=size,
        source=path,
        sidecars=sidecars,
    )
    return [copy], ()


def _sidecars(database: Path) -> tuple[Path, ...]:
    return tuple(database.with_name(f"{database.name}{s}") for s in SQLITE_SIDECARS)


def _copy_journal(source: Path, target: Path) -> int:
    """Copy the complete lines of the Optuna journal ``source`` to ``target`` (0600,
    durable); its size in bytes. Optuna appends one operation per line and reads a
    journal as its complete lines: a line being appended while this reads is left out,
    as Optuna's own reader leaves it."""
    with source.open("rb") as src, private_file(target) as out:
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
