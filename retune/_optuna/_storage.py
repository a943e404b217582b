"""Optuna storages: opening an RDB URL (its schema set up once when several openers
race) or a journal file, closing them, and translating Optuna's and the storage's
errors into :class:`~retune.StudyError`."""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterator

import optuna
from optuna.exceptions import ExperimentalWarning, OptunaError
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend

from retune._errors import StudyError

logger = logging.getLogger(__name__)

MAX_STALE_RETRIES = 2
#: How long a connection to an SQLite storage waits for another's lock before it fails
#: (pysqlite's default is 5 s): the store's own default lock timeout.
SQLITE_BUSY_TIMEOUT_S = 30.0
#: A RUNNING trial is stale, and failed, once its last heartbeat is this many heartbeat
#: intervals old (by the database's clock): Optuna's grace period.
STALE_AFTER_HEARTBEATS = 2


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
def _translated(study_name: str, doing: str) -> Iterator[None]:
    try:
        yield
    except (OptunaError, KeyError, ValueError, RuntimeError) as exc:
        if isinstance(exc, (PruneTrial, FailTrial)):
            raise
        raise StudyError(
            f"{doing} failed: {type(exc).__name__}: {exc}", study_name=study_name
        ) from exc
    except Exception as exc:
        if not _is_storage_error(exc):
            raise
        raise StudyError(
            f"{doing} failed: {type(exc).__name__}: {exc}", study_name=study_name
        ) from exc


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
    return JournalStorage(JournalFileBackend(storage))


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
        except Exception as exc:
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
    engine_kwargs = {}
    path = _sqlite_file(storage)
    if path is not None:
        _use_wal(path)
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    with _OPENING, _experimental_ok():
        if heartbeat_interval is None:
            return RDBStorage(storage, engine_kwargs=engine_kwargs)
        return RDBStorage(
            storage,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=STALE_AFTER_HEARTBEATS * heartbeat_interval,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                max_retry=MAX_STALE_RETRIES
            ),
        )


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
