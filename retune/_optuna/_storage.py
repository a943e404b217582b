"""Optuna storages: opening an RDB URL (its schema set up once when several openers
race; on PostgreSQL with connection limits) or a journal file, closing them, and
translating Optuna's and the storage's errors into :class:`~retune.StudyError` (a storage
out of reach into its :class:`~retune._errors.StudyStorageUnavailableError`)."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import optuna
from optuna.exceptions import ExperimentalWarning, OptunaError
from optuna.storages import (
    BaseStorage,
    JournalStorage,
    RDBStorage,
    RetryHeartbeatStaleTrialCallback,
)
from optuna.storages._rdb import models as rdb_models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from retune._errors import StudyError, StudyStorageUnavailableError
from retune._optuna._schema import check_schema

logger = logging.getLogger(__name__)

MAX_STALE_RETRIES = 2
#: How long a connection to an SQLite storage waits for another's lock before it fails
#: (pysqlite's default is 5 s): the store's own default lock timeout.
SQLITE_BUSY_TIMEOUT_S = 30.0
#: A RUNNING trial is stale, and failed, once its last heartbeat is this many heartbeat
#: intervals old (by the database's clock): Optuna's grace period.
STALE_AFTER_HEARTBEATS = 2
#: libpq connection parameters of a PostgreSQL storage, unless the URL's query sets the
#: key (or, for ``connect_timeout``, ``PGCONNECT_TIMEOUT`` does): connecting gives up after
#: 10 s (psycopg's default is 130 s); TCP keepalives find a dead peer of a connection
#: waiting for an answer within 10 + 5 x 3 = 25 s, and ``tcp_user_timeout`` one that stops
#: acknowledging what was sent within 30 s, where the kernel would retry for ~15 minutes.
#: The store's own (``tunewatch.store._engine``), copied: retune imports neither tunewatch
#: nor SQLAlchemy.
PG_CONNECT_DEFAULTS: Mapping[str, int] = MappingProxyType(
    {
        "connect_timeout": 10,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 30_000,
    }
)


def _is_storage_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the storage under Optuna, which lets it through
    unwrapped: a journal file's I/O error, or an RDB's error as SQLAlchemy raises it.
    SQLAlchemy's are recognised by their package, not imported: no domain package
    imports SQLAlchemy (DESIGN.md §1)."""
    if isinstance(exc, OSError):
        return True
    return any(cls.__module__.partition(".")[0] == "sqlalchemy" for cls in type(exc).__mro__)


class PruneTrial(Exception):
    """Raised by an objective to end its trial as PRUNED."""


class FailTrial(Exception):
    """Raised by an objective to end its trial as FAIL (recorded, not re-raised)."""


class TrialLost(Exception):
    """Raised by a :class:`~retune._optuna.TrialHandle` writing to a trial that another
    process finished while this one ran it: failed as stale (this worker paused past its
    heartbeats' grace), or as orphaned. The trial is dropped; the study goes on."""


@contextlib.contextmanager
def _experimental_ok() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ExperimentalWarning)
        yield


@contextlib.contextmanager
def _translated(
    study_name: str, doing: str, storage: str | BaseStorage | None = None
) -> Iterator[None]:
    """Optuna's and the storage's errors raised inside as :class:`StudyError`; an
    unavailable ``storage`` (its URL, or the storage opened) is named in the message."""
    try:
        yield
    except (OptunaError, KeyError, ValueError, RuntimeError) as exc:
        if isinstance(exc, (PruneTrial, FailTrial)):
            raise
        raise _study_error(exc, study_name, doing, storage) from exc
    except Exception as exc:  # classified: only the storage's driver errors are translated
        if not _is_storage_error(exc):
            raise
        raise _study_error(exc, study_name, doing, storage) from exc


def _study_error(
    exc: BaseException, study_name: str, doing: str, storage: str | BaseStorage | None = None
) -> StudyError:
    """``exc``, raised while ``doing``, as a :class:`StudyError`: a
    :class:`StudyStorageUnavailableError` naming the driver's error, and the storage
    (:func:`_storage_named`), when the storage's database could not be reached or could
    not serve (:func:`_unavailable_cause`). Optuna wraps every SQLAlchemy error of a
    commit in a ``StorageInternalError`` that blames "invalid data in the commit, e.g.
    exceeding max length": a PostgreSQL restart was reported so, and failed the job
    running the study for good. An SQLite file this process may not open or write
    (:data:`_UNUSABLE_SQLITE_CODES`: another user's file, a missing directory) is a
    :class:`StudyError` naming the file and SQLite's reason: waiting does not change it,
    and it was reported as that "invalid data", naming no file."""
    where = _storage_named(storage)
    named = f" ({where})" if where else ""
    cause = _unavailable_cause(exc)
    if cause is not None:
        return StudyStorageUnavailableError(
            f"{doing} failed: the storage is unavailable: {type(cause).__name__}: {cause}" + named,
            study_name=study_name,
        )
    unusable = _sqlite_error(exc, _UNUSABLE_SQLITE_CODES)
    if unusable is not None:
        return StudyError(
            f"{doing} failed: the storage cannot be opened or written: "
            f"{type(unusable).__name__}: {unusable}{named}",
            study_name=study_name,
        )
    return StudyError(f"{doing} failed: {type(exc).__name__}: {exc}", study_name=study_name)


def _sqlite_error(exc: BaseException, codes: frozenset[int]) -> BaseException | None:
    """The SQLite error in ``exc``'s chain whose (primary) result code is one of
    ``codes``, else None."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, sqlite3.Error):
            code = getattr(error, "sqlite_errorcode", None)  # the extended code
            if isinstance(code, int) and code & 0xFF in codes:
                return error
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return None


def _storage_named(storage: str | BaseStorage | None) -> str | None:
    """``storage`` (a URL, or an :class:`RDBStorage` opened on one) for a message:
    ``SQLite file PATH``, or ``storage URL`` with its password as ``***``
    (:func:`_shown_storage`); ``None`` when it is not known (a driver's error names no
    database)."""
    url = storage.url if isinstance(storage, RDBStorage) else storage
    if not isinstance(url, str):
        return None
    path = _sqlite_file(url)
    return f"SQLite file {path}" if path is not None else f"storage {_shown_storage(url)}"


#: PostgreSQL's SQLSTATEs of a server that cannot serve now, whatever the data: the
#: classes of connection exceptions, insufficient resources (too many connections, a
#: full disk), operator intervention (a shutdown, "the database system is starting
#: up") and system errors, and a read-only transaction (a failover left the URL on a
#: standby). The store's (``tunewatch.store._engine``), copied: retune imports neither
#: tunewatch nor SQLAlchemy.
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57", "58")
_UNAVAILABLE_SQLSTATES = ("25006",)
#: The drivers of a storage reached over a connection (libpq's): an error of theirs
#: with no SQLSTATE is the client's own, the connection failing (refused, reset, closed).
_CONNECTED_DRIVERS = ("psycopg", "psycopg2")
#: SQLite's (primary) result codes of a file that cannot serve now, whatever the data:
#: a full disk, an I/O error (a storage outage: space freed, the disk back, it serves).
_UNAVAILABLE_SQLITE_CODES = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR})
#: ... and of a file this process may not use at all: not writable ("attempt to write a
#: readonly database": another user's file, a read-only mount), not openable (its
#: directory missing or not searchable), a permission refused. Its other errors (a file
#: that is no database, a constraint, a lock held past the wait) are the study's.
_UNUSABLE_SQLITE_CODES = frozenset(
    {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM}
)
#: The errnos of a journal file that cannot take a write now, whatever the data: its disk
#: or its quota full, the file-size limit reached (``ulimit -f``: SQLite says
#: ``SQLITE_FULL`` for it), an I/O error. As :data:`_UNAVAILABLE_SQLITE_CODES`: space freed,
#: the disk back, it serves. Its other errors (a missing directory, another user's file)
#: are the study's.
_UNAVAILABLE_OS_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def _unavailable_cause(exc: BaseException) -> BaseException | None:
    """The error in ``exc``'s chain (its causes, or else the error it was raised while
    handling) that says the storage's database was out of reach: a connection SQLAlchemy
    found dropped (``connection_invalidated``), a libpq driver's connection failure (an
    ``OperationalError`` or ``InterfaceError`` without SQLSTATE: refused, reset, closed)
    or a server's refusal to serve now (:data:`_UNAVAILABLE_SQLSTATE_CLASSES`); an SQLite
    file or a journal file on a full or failing disk (:data:`_UNAVAILABLE_SQLITE_CODES`,
    :data:`_UNAVAILABLE_OS_ERRNOS`). ``None`` for anything else: a value the database
    refuses, a constraint, SQLite's other errors (its file has no connection to lose)."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _UNAVAILABLE_OS_ERRNOS:
            return error
        if _from(error, ("sqlalchemy",)) and getattr(error, "connection_invalidated", False):
            return getattr(error, "orig", None) or error
        if _from(error, _CONNECTED_DRIVERS):
            state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
            if not isinstance(state, str):
                names = {cls.__name__ for cls in type(error).__mro__}
                if names & {"OperationalError", "InterfaceError"}:
                    return error
            elif state in _UNAVAILABLE_SQLSTATES or state[:2] in _UNAVAILABLE_SQLSTATE_CLASSES:
                return error
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return _sqlite_error(exc, _UNAVAILABLE_SQLITE_CODES)


def _from(exc: BaseException, packages: tuple[str, ...]) -> bool:
    """Whether ``exc``'s class is one of ``packages``' (by its module, not imported)."""
    return type(exc).__module__.partition(".")[0] in packages


# Opening an RDB storage sets up Optuna's schema when the database is new, and two
# openers doing it at once collide ("table studies already exists", a duplicate
# alembic_version row). In a process (a job's progress reporter opens the storage while
# its worker does) opening is serialised; processes (workers the launcher starts in one
# tick, `tunewatch worker` on another host) retry: once the winner has set the schema up,
# the others find it in place.
_OPENING = threading.Lock()
#: Tries at opening an RDB storage whose schema another process is setting up, and the
#: wait before the first retry (doubled at each).
_OPEN_TRIES = 6
_OPEN_RETRY_S = 0.05
_SCHEMA_SETUP_COLLISIONS = (
    "already exists",  # a table (SQLite), a relation (PostgreSQL), an index
    "alembic_version",  # the schema version row: a UNIQUE constraint
    "duplicate key value",  # PostgreSQL's unique violation (pg_type, alembic_version)
)


def _is_schema_setup_collision(exc: BaseException) -> bool:
    """Whether ``exc`` is the database refusing Optuna's schema set-up because another
    process was doing it at the same time."""
    return (
        _is_storage_error(exc)
        and not isinstance(exc, OSError)
        and any(text in str(exc) for text in _SCHEMA_SETUP_COLLISIONS)
    )


def make_storage(storage: str, *, heartbeat_interval: int | None) -> optuna.storages.BaseStorage:
    """An RDB storage for ``dialect://`` URLs, else a journal file at that path."""
    if "://" in storage:
        return _open_rdb(storage, heartbeat_interval=heartbeat_interval)
    if heartbeat_interval is not None:
        raise ValueError(
            "`heartbeat_interval` needs an RDB storage URL (journal files have no heartbeats), "
            f"got storage {storage!r}"
        )
    return JournalStorage(_WholeLineJournalBackend(storage))


class _WholeLineJournalBackend(JournalFileBackend):
    """Optuna's journal file, whose append that fails takes back what it wrote.

    Optuna's left part of its line when the write failed (a full disk, a quota, the
    file-size limit, an I/O error): the next append glued a whole line onto it, and from
    then on every read of the journal failed with ``JSONDecodeError``, every study in the
    file unreadable for good. Here the append notes the file's size under Optuna's lock
    (``_lock``, which its appends take: readers take none) and, when the write or its
    ``fsync`` fails, cuts the file back to it and raises the error, naming the file. A
    reader meanwhile read no line of a part written: Optuna's reader skips a last line
    without its end (a :class:`JournalStorage` appends one line at a time); only a line
    written whole whose ``fsync`` failed may have been read by another process first."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        self._lock.acquire()
        try:
            self._append(data.encode("utf-8"))
        finally:
            self._lock.release()

    def _append(self, data: bytes) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(self._file_path, flags, 0o666)  # as Optuna's open(path, "ab")
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:  # a write cut short (the room ran out) returns its count
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except BaseException as exc:  # taken back, then re-raised
                self._take_back(fd, size, exc)
                if isinstance(exc, OSError) and exc.filename is None:
                    raise OSError(exc.errno, exc.strerror, self._file_path) from exc
                raise
        finally:
            os.close(fd)

    def _take_back(self, fd: int, size: int, exc: BaseException) -> None:
        """Cut the journal back to ``size`` bytes, its size before the append that failed
        with ``exc``; one that cannot be cut is logged (its next read will fail)."""
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError as cut:
            logger.error(
                "journal %s: an append failed (%s: %s) and the part of its line written "
                "could not be taken back (%s: %s): the journal cannot be read until that "
                "part is removed, cutting the file to %d bytes",
                self._file_path,
                type(exc).__name__,
                exc,
                type(cut).__name__,
                cut,
                size,
            )


def close_storage(backend: optuna.storages.BaseStorage) -> None:
    """Close the connections ``backend`` holds: an RDB storage's engine keeps a pool of
    them open until the garbage collector frees it (on PostgreSQL each is a server
    process), so a storage opened for a read or a run is closed after it."""
    if isinstance(backend, RDBStorage):
        backend.remove_session()
        backend.engine.dispose()


def _open_rdb(storage: str, *, heartbeat_interval: int | None) -> RDBStorage:
    for attempt in range(_OPEN_TRIES - 1):
        try:
            return _new_rdb(storage, heartbeat_interval=heartbeat_interval)
        except Exception as exc:  # classified: only a schema-setup collision is retried
            if not _is_schema_setup_collision(exc):
                raise
            wait_s = _OPEN_RETRY_S * 2**attempt
            logger.info(
                "opening the Optuna storage collided with another process setting its schema "
                "up (%s: %s); trying again in %.2f s",
                type(exc).__name__,
                str(exc).splitlines()[0],
                wait_s,
            )
        time.sleep(wait_s)
    return _new_rdb(storage, heartbeat_interval=heartbeat_interval)


def _new_rdb(storage: str, *, heartbeat_interval: int | None) -> RDBStorage:
    engine_kwargs: dict[str, Any] = {}
    path = _sqlite_file(storage)
    if path is not None:
        _create_private(path)
        _use_wal(path)
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    elif _LIBPQ_URL.match(storage):
        engine_kwargs["pool_pre_ping"] = True
        engine_kwargs["connect_args"] = _pg_connect_args(storage)
    with _OPENING, _experimental_ok():
        if heartbeat_interval is None:
            # Optuna's schema check is check_schema's, whose head is read once
            backend = RDBStorage(
                storage, engine_kwargs=engine_kwargs, skip_compatibility_check=True
            )
        else:
            backend = RDBStorage(
                storage,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=STALE_AFTER_HEARTBEATS * heartbeat_interval,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                    max_retry=MAX_STALE_RETRIES
                ),
                skip_compatibility_check=True,
            )
        check_schema(backend)
        return backend


def running_without_heartbeat(backend: RDBStorage, study_id: int) -> list[int]:
    """The ids of study ``study_id``'s RUNNING trials that have no heartbeat row. Optuna's
    stale check (``_get_stale_trial_ids``, whose tables this reads) skips them: a worker
    killed before its trial's first heartbeat left it RUNNING for good."""
    trial, beat = rdb_models.TrialModel, rdb_models.TrialHeartbeatModel
    with _create_scoped_session(backend.scoped_session) as session:
        rows = (
            session.query(trial.trial_id)
            .outerjoin(beat, beat.trial_id == trial.trial_id)
            .filter(trial.study_id == study_id, trial.state == TrialState.RUNNING)
            .filter(beat.trial_id.is_(None))
            .all()
        )
    return [int(row[0]) for row in rows]


def _sqlite_file(storage: str) -> str | None:
    """The file of an SQLite URL, ``sqlite:///PATH`` with or without a driver
    (``sqlite+pysqlite:///``), query dropped; ``None`` for any other URL or an
    in-memory database."""
    match = _SQLITE_URL.match(storage)
    if match is None:
        return None
    path = storage[match.end() :].partition("?")[0]
    return path if path and path != ":memory:" else None


_SQLITE_URL = re.compile(r"sqlite(?:\+\w+)?:///")


def _pg_connect_args(storage: str) -> dict[str, int | None]:
    """:data:`PG_CONNECT_DEFAULTS` less the keys the URL ``storage`` sets, and less
    ``connect_timeout`` when ``PGCONNECT_TIMEOUT`` is set: the driver is handed these as
    keyword arguments, which win over both. For psycopg, also ``prepare_threshold=None``.

    With them, and the pool's pre-ping (a connection the server dropped, by a restart, a
    failover or ``pg_terminate_backend``, is replaced when next taken from the pool, not
    failed on), a call to a server that does not answer fails (a
    ``StudyStorageUnavailableError`` where it is translated) instead of waiting: a
    connection being opened, within ``connect_timeout``; an open one whose peer is gone
    (a partition, a dead host), within the keepalives' or ``tcp_user_timeout``'s limit.
    A peer that keeps the connection open and acknowledges what is sent but forwards
    nothing (a stalled proxy) is no dead peer to the kernel: a call on a connection
    opened before it stalled still waits.

    No ``statement_timeout`` is set: a server that never sees the query cannot end it,
    and PgBouncer (1.20 on) refuses a connection whose startup ``options`` set it unless
    told to ignore them. An operator may set one for the role, or in the URL
    (``?options=-c%20statement_timeout%3D60000``).

    No statement is prepared on the server (psycopg's ``prepare_threshold=None``, as the
    store's connections): behind PgBouncer in transaction pooling a statement psycopg
    prepared after its fifth run on one server connection was sent to another, and
    tuning failed with ``DuplicatePreparedStatement``, which Optuna reports as a
    ``StorageInternalError`` ("invalid data in the commit").
    """
    match = _USERINFO.match(storage)
    query = storage[match.end() if match else 0 :].partition("?")[2]
    given = {key for key, _ in parse_qsl(query, keep_blank_values=True)}
    if os.environ.get("PGCONNECT_TIMEOUT"):
        given.add("connect_timeout")
    args: dict[str, int | None] = {
        key: value for key, value in PG_CONNECT_DEFAULTS.items() if key not in given
    }
    if _PSYCOPG_URL.match(storage):
        args["prepare_threshold"] = None
    return args


#: A PostgreSQL URL whose driver is libpq's (psycopg, the one installed, or psycopg2).
_LIBPQ_URL = re.compile(r"postgresql(?:\+(?:psycopg|psycopg2))?://")
#: A PostgreSQL URL whose driver is psycopg (3), named or SQLAlchemy's default (from 2.1):
#: its connect takes ``prepare_threshold``.
_PSYCOPG_URL = re.compile(r"postgresql(?:\+psycopg)?://")
#: A URL's scheme and user information, as SQLAlchemy reads them (``make_url``): the
#: query is what follows the first ``?`` after them (a password may hold a ``?``).
_USERINFO = re.compile(r"[\w+]+://(?:[^:/]*(?::[^@]*)?@)?")


def _shown_storage(storage: str) -> str:
    """``storage`` for a message: a URL's password, if any, as ``***``, in both places one
    works (the userinfo's, and the value of a query key naming one, in any case:
    ``?password=``, ``sslpassword=``); the rest as given. A journal file's path as is.

    The store's ``redact_url`` (``tunewatch.store._engine``) does this by SQLAlchemy's
    parse, which retune does not import: this reads the userinfo as that parse does
    (:data:`_PASSWORD`), and hides an unencoded ``@`` in a password with it (the parse
    would read the password's tail as the host's head)."""
    if "://" not in storage:
        return storage
    match = _PASSWORD.match(storage)
    if match is not None:
        storage = f"{match['head']}***{storage[match.end() :]}"
    after = _USERINFO.match(storage)
    start = after.end() if after else 0
    rest, mark, query = storage[start:].partition("?")
    if not mark:
        return storage
    pairs = (
        f"{key}=***" if "password" in unquote_plus(key).lower() else f"{key}{sep}{value}"
        for key, sep, value in (pair.partition("=") for pair in query.split("&"))
    )
    return f"{storage[:start]}{rest}?{'&'.join(pairs)}"


#: A URL's scheme, user name and password, as SQLAlchemy's ``make_url`` reads them (a
#: password may hold ``:``, ``/`` and ``?``); the password runs on past an ``@`` while
#: the host after it would hold one (``user:p@ss@host``: the password ``p@ss``).
_PASSWORD = re.compile(r"(?P<head>[\w+]+://[^:/]*:)[^@]*(?:@[^/:?@]*)*?(?=@[^/:?@]*(?:[/:?]|$))")


def _create_private(path: str) -> None:
    """Create the SQLite storage file ``path``, when there is none, readable by its owner
    only (an empty file is an empty SQLite database; SQLite gives its WAL and
    shared-memory files the database's mode). It holds the studies' trial parameters,
    fold scores and data hashes: SQLite made it under the umask, 0644 under the usual
    one. An existing file keeps its mode. A URI filename (``file:``; its query may open
    it read-only) is SQLite's to open, and a file that cannot be made here is left to
    SQLite's open, which fails naming why (a :class:`StudyStorageUnavailableError`
    where it is translated). The store's (``tunewatch.store._engine``), copied: retune
    does not import tunewatch."""
    if path.startswith("file:"):
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:  # its directory missing or not writable: SQLite's open says so
        logger.debug("Optuna storage %s: not created beforehand: %s", path, exc)
        return
    os.close(fd)


def _use_wal(path: str) -> None:
    """Put the SQLite file at ``path`` in WAL mode (it stays so; a new file is made):
    readers — ``tunewatch backup``'s ``VACUUM INTO`` of it, a dashboard's history — then
    never block the study's writes. In the default rollback-journal mode a backup holding
    its read for 16 s failed every trial that reported meanwhile ("database is locked").
    A file another connection is using in rollback mode is left so, said why, and tried
    again at the next open: the switch does not wait for it (with the lock wait, every
    open waited 30 s while a reader held the file)."""
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=0)) as conn:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
    except sqlite3.Error as exc:
        logger.warning("Optuna storage %s: could not switch it to WAL mode: %s", path, exc)
        return
    if mode is None or str(mode[0]).lower() != "wal":
        logger.warning("Optuna storage %s: stays in journal mode %s, not WAL", path, mode)
