"""Engine construction (SQLite pragmas, PostgreSQL pooling) and the one transaction scope."""

from __future__ import annotations

import logging
import math
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote_plus

from sqlalchemy import URL, Connection, Engine, Table, create_engine, event, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from .. import _outage_log
from .._errors import (
    ConfigError,
    ConflictError,
    DatabaseUnavailableError,
    InvalidValueError,
    StoreError,
    os_reason,
)
from ._checkpoint import WAL_LIMIT_PAGES
from ._file_access import cannot_make_dir, file_access_problem, sqlite_access_problem
from ._file_identity import FileIdentity
from ._sample import SQLITE_SAMPLE_KEY, sample_key
from ._write_deadline import (
    WRITE_DEADLINE_MARGIN_S,
    checked_out_within,
    watched_cursor,
    within_deadline,
)

logger = logging.getLogger(__name__)


def log_unavailable(msg: str, *args: object) -> None:
    """Log a "database unavailable" warning: the first of the process, then at most one
    a minute with how many were not logged (:data:`tunewatch._outage_log.UNAVAILABLE_STORE`),
    not one per failed operation."""
    _outage_log.UNAVAILABLE_STORE.warning(logger, msg, *args)


SqliteSynchronous = Literal["NORMAL", "FULL"]

#: Execution option marking a read-only scope: on SQLite it opens a plain (deferred)
#: ``BEGIN`` instead of ``BEGIN IMMEDIATE`` so readers never queue behind the writer.
READ_ONLY_OPTION = "tunewatch_read_only"

#: Execution option marking the scoring log's write scope: on PostgreSQL each statement
#: in it is bounded by the lock timeout too (``SET LOCAL statement_timeout``), and the
#: scope as a whole by a client-side deadline (:data:`WRITE_DEADLINE_MARGIN_S`), so a
#: stalled group commit fails every request waiting on it with a 503, like a lock wait.
BOUNDED_WRITE_OPTION = "tunewatch_bounded_write"

#: How long a transaction waits for a lock before it fails with ``StoreUnavailableError``.
DEFAULT_LOCK_TIMEOUT_S = 30.0

#: Engine execution option holding a SQLite file store's :class:`FileIdentity`: each
#: transaction checks it before its ``COMMIT``.
_IDENTITY_OPTION = "tunewatch_file_identity"

#: Engine execution option holding the PostgreSQL client-side deadline in seconds: of the
#: scoring log's write scopes as a whole, and of every other scope's checkout.
_DEADLINE_OPTION = "tunewatch_deadline_s"

#: libpq connection defaults (a key the URL's query sets wins): connecting gives up after
#: 10 s; TCP keepalives find a dead peer of an idle connection (one waiting for an
#: answer) within 10 + 5 x 3 = 25 s, and ``tcp_user_timeout`` one that stops
#: acknowledging what was sent within 30 s, where the kernel would retry for ~15 minutes.
_PG_CONNECT_DEFAULTS: dict[str, int] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


def redact_url(url: str) -> str:
    """``url`` with its password, if any, shown as ``***`` (for messages and output).

    Both places a password works are hidden: the userinfo's (``user:***@``) and the value
    of a query key naming one, in any case (``?password=``, which SQLAlchemy's psycopg
    dialect hands libpq, and ``sslpassword``, the client key's). The rest reads as
    SQLAlchemy renders it: query keys sorted, ``***`` not percent-encoded.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparseable URL>"
    shown = parsed.set(query={}).render_as_string(hide_password=True)
    if not parsed.query:
        return shown
    pairs = (
        f"{quote_plus(key)}={'***' if 'password' in key.lower() else quote_plus(value)}"
        for key in sorted(parsed.query)
        for value in _values(parsed.query[key])
    )
    return f"{shown}?{'&'.join(pairs)}"


def _values(value: str | tuple[str, ...]) -> tuple[str, ...]:
    """A URL query key's values (a repeated key has a tuple of them)."""
    return (value,) if isinstance(value, str) else value


def make_engine(
    url: str,
    *,
    sqlite_synchronous: SqliteSynchronous = "NORMAL",
    wal_autocheckpoint: bool = True,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    connections: int | None = None,
) -> Engine:
    """Build the engine for a SQLite or PostgreSQL (``postgresql+psycopg://``) URL.

    ``connections``: a pool of exactly that many connections (none opened beyond it),
    as for a single writer thread's own engine; ``None``, SQLAlchemy's default (5, and
    10 more under load, each waited for up to 30 s).

    SQLite is opened in WAL mode with ``busy_timeout=30000`` and foreign keys on, and
    every writing transaction starts with ``BEGIN IMMEDIATE``: a transaction that reads
    and then writes would otherwise fail with ``SQLITE_BUSY`` at once, ignoring the busy
    timeout. ``synchronous`` defaults to ``NORMAL`` because in WAL mode a committed
    transaction survives a crash of the *process* (including ``kill -9``) at
    ``NORMAL``; only an operating-system crash or power loss can lose the last commits,
    and ``FULL`` (an fsync per commit) is needed only to survive that.
    ``wal_autocheckpoint=False`` leaves checkpoints to the caller
    (:class:`~tunewatch.store._checkpoint.WalCheckpointer`, as :class:`Store` does).
    A file's device and inode are recorded: a transaction commits only while its path
    still names that file (see :mod:`._file_identity`), else ``StoreUnavailableError``.
    ``journal_size_limit`` is :data:`~tunewatch.store._checkpoint.WAL_LIMIT_PAGES` pages:
    the first commit after the WAL is rewound cuts the file back to that, which SQLite
    otherwise never does (a WAL a long read grew kept its size until the process ended).

    PostgreSQL connections are pre-pinged so a restarted server costs one reconnect,
    not a failed request; ``?options=-csearch_path%3D<schema>`` in the URL is honoured.
    They set ``lock_timeout`` (and the scoring log's writes, marked with
    :data:`BOUNDED_WRITE_OPTION`, ``statement_timeout``) to ``lock_timeout_s``, and
    connect with libpq's ``connect_timeout`` and TCP keepalives (unless the URL sets
    them): a blocked or half-open connection fails its transaction with
    ``StoreUnavailableError`` instead of waiting with no limit. Reads and migrations
    have no statement limit (a migration waits for locks with no limit either). They
    prepare no statements (psycopg's ``prepare_threshold=None``): the server plans each
    one for its parameters and the tables as they are, never a cached generic plan.

    ``lock_timeout_s`` (default 30) is how long a transaction waits for a lock: SQLite's
    ``busy_timeout``, PostgreSQL's ``lock_timeout``. On PostgreSQL the scoring log's write
    scope also has a client-side deadline of ``lock_timeout_s`` +
    :data:`WRITE_DEADLINE_MARGIN_S`, which holds where no server-side timeout can answer
    (a proxy that keeps the connection open but stops forwarding): its connection's
    socket is then shut down, the write fails with ``StoreUnavailableError`` and the pool
    drops the connection. Every other scope has that deadline on taking its connection
    (the pool's pre-ping, a reconnect), not on its body: a call through such a proxy
    fails the same way instead of waiting with no limit.
    """
    if sqlite_synchronous not in ("NORMAL", "FULL"):
        raise ValueError(
            f"`sqlite_synchronous` must be one of NORMAL, FULL; got {sqlite_synchronous!r}"
        )
    if (
        isinstance(lock_timeout_s, bool)
        or not isinstance(lock_timeout_s, int | float)
        or not (math.isfinite(lock_timeout_s) and lock_timeout_s >= 0.001)
    ):
        raise ValueError(
            f"`lock_timeout_s` must be a finite number of seconds >= 0.001, got {lock_timeout_s!r}"
        )
    lock_timeout_ms = round(lock_timeout_s * 1000)
    parsed = parse_store_url(url)
    pool: dict[str, Any] = (
        {}
        if connections is None
        else {"pool_size": connections, "max_overflow": 0, "pool_timeout": lock_timeout_s}
    )
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(url)
        identity: FileIdentity | None = None
        if path is not None:  # the file opened is the one a WalCheckpointer is given
            # the data directory, if this makes it, is the owner's only: reports and the
            # tuning storage live beside the database
            try:
                Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseUnavailableError(cannot_make_dir(Path(path).parent, exc)) from exc
            try:
                _create_private(path)
                identity = FileIdentity(path)
            except OSError as exc:
                problem = file_access_problem(Path(path), "create", os_reason(exc))
                raise DatabaseUnavailableError(problem) from exc
            parsed = parsed.set(database=path)
        engine = _create(parsed, connect_args={"check_same_thread": False}, **pool)
        if identity is not None:
            engine.update_execution_options(**{_IDENTITY_OPTION: identity})
        _install_sqlite_hooks(engine, sqlite_synchronous, wal_autocheckpoint, lock_timeout_ms)
        return engine
    connect_args = {k: v for k, v in _PG_CONNECT_DEFAULTS.items() if k not in parsed.query}
    engine = _create(parsed, pool_pre_ping=True, connect_args=connect_args, **pool)
    _install_postgres_hooks(engine, lock_timeout_ms)
    deadline_s = lock_timeout_s + WRITE_DEADLINE_MARGIN_S
    engine.update_execution_options(**{_DEADLINE_OPTION: deadline_s})
    return engine


def _create(url: URL, **kwargs: Any) -> Engine:
    """``create_engine``, whose driver reads the URL's query now: a value it cannot take
    (``?timeout=abc``) escaped as a bare ``ValueError`` (a traceback from the CLI)."""
    try:
        return create_engine(url, **kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{_URL_SETTING} has a query value the {url.get_backend_name()} driver cannot "
            f"take: {exc} (in {redact_url(url.render_as_string(hide_password=False))})",
            code="invalid_store_url",
        ) from exc


def _create_private(path: str) -> None:
    """Create a new database file readable by its owner only (an empty file is an empty
    SQLite database; SQLite gives its WAL and shared-memory files the database's mode).
    It holds every scored request's features, the labels and the audit log: under the
    usual umask it was 0644, readable by any local user. An existing file keeps its
    mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


#: The setting a store URL comes from, as messages name it.
_URL_SETTING = "`store.url` (or TUNEWATCH_STORE_URL)"


#: The DB-API driver of each backend tunewatch installs (SQLAlchemy's default for both).
_DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg"}


def parse_store_url(url: str) -> URL:
    """``url`` parsed, else ``ConfigError`` naming the setting: a SQLite or PostgreSQL URL
    SQLAlchemy parses. An unparseable one is not quoted (it may hold a password), nor is
    one whose host holds an ``@``: SQLAlchemy ends the password at its first ``@``, so
    the rest of a password holding one (``u:p@ss@host``) is read as the host, which the
    driver's error quoted."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is no integer
        raise ConfigError(
            f"{_URL_SETTING} must be a sqlite or postgresql URL such as "
            "sqlite:///path/to/tunewatch.db or postgresql+psycopg://user@host/db, got "
            f"{len(url)} characters SQLAlchemy cannot parse as a URL (a port that is not a "
            "number, say; the value is not shown: it may hold a password)",
            code="invalid_store_url",
        ) from exc
    if parsed.host is not None and "@" in parsed.host:  # before any message quotes it
        raise ConfigError(
            f"{_URL_SETTING}: its host holds '@': write an '@' in the password as %40 (the "
            "value is not shown: it holds a password)",
            code="invalid_store_url",
        )
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"{_URL_SETTING} must be a sqlite or postgresql URL, got backend {backend!r} "
            f"in {redact_url(url)}",
            code="invalid_store_url",
        )
    driver = parsed.get_driver_name()
    if driver != _DRIVERS[backend]:  # another one is not installed: an ImportError later
        raise ConfigError(
            f"{_URL_SETTING} must be a {backend} URL with the driver {_DRIVERS[backend]!r} "
            f"(the one installed) or none, got driver {driver!r} in {redact_url(url)}",
            code="invalid_store_url",
        )
    return parsed


def sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL, ``~`` expanded, or None (in-memory, URI
    filenames, PostgreSQL). :func:`make_engine` opens this file."""
    parsed = parse_store_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    return str(Path(database).expanduser())


def _install_sqlite_hooks(
    engine: Engine, synchronous: SqliteSynchronous, wal_autocheckpoint: bool, busy_timeout_ms: int
) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module; "begin" emits BEGIN.
        dbapi_connection.isolation_level = None
        dbapi_connection.create_function(SQLITE_SAMPLE_KEY, 1, sample_key, deterministic=True)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            page_size = cursor.execute("PRAGMA page_size").fetchone()[0]
            cursor.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_PAGES * int(page_size)}")
            if not wal_autocheckpoint:
                cursor.execute("PRAGMA wal_autocheckpoint=0")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(READ_ONLY_OPTION):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def _install_postgres_hooks(engine: Engine, lock_timeout_ms: int) -> None:
    """Every connection waits at most ``lock_timeout_ms`` for a lock; every writing scope
    is ended by the server once it sits idle inside its transaction (waiting for its
    client's next statement or commit) for that + :data:`WRITE_DEADLINE_MARGIN_S`,
    releasing its locks (``idle_in_transaction_session_timeout``, set per transaction).

    The lock timeout is set for the session when a connection opens, and again for each
    writing scope's transaction (``SET LOCAL``, in the round trip that sets its idle
    limit): behind a transaction pooler (PgBouncer's ``pool_mode = transaction``) a
    client connection's transactions run on whichever server connection is free, and
    one the pooler opened later (``server_lifetime``, ``RECONNECT``, a growing pool)
    never saw the session's setting: a lease renewal blocked by a lock waited for as
    long as the lock was held. Read scopes there keep the server's default (none, unless
    the role or database sets one): they take no row lock and wait only on DDL.

    A process stopped inside a write (SIGSTOP, a VM pause: a replica in its lease
    upsert, a worker in its heartbeat) held its row locks for as long as it was stopped:
    every other replica's lease attempt, the launcher's requeue of that stale job, waited
    out its lock timeout at every try. No writing scope sits idle that long: their work
    between statements is a few rows' worth of Python, and a migration's is in the server.
    Read scopes hold no row lock and are left without the limit: one that builds a large
    window from its rows before it commits would be cut off, its read wasted.
    """
    idle_ms = lock_timeout_ms + round(WRITE_DEADLINE_MARGIN_S * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.cursor_factory = watched_cursor()
        # No prepared statements: the server planned a statement psycopg prepared (after
        # five runs) once, generically, and kept that plan. The label look-up's, made
        # while ``labels`` was empty, walked a model's every label for each chunk of ids
        # (1.04 s a chunk, 9 ms planned for its ids) as labels accumulated unanalysed.
        dbapi_connection.prepare_threshold = None
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = {lock_timeout_ms}")
        # a session setting: it outlives this transaction (writing scopes set it again)
        dbapi_connection.commit()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get(READ_ONLY_OPTION):
            return
        limits = (
            f"SET LOCAL lock_timeout = {lock_timeout_ms}; "
            f"SET LOCAL idle_in_transaction_session_timeout = {idle_ms}"
        )
        if options.get(BOUNDED_WRITE_OPTION):  # one round trip for all
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {lock_timeout_ms}; {limits}")
        else:
            conn.exec_driver_sql(limits)


@contextmanager
def transaction(engine: Engine, operation: str) -> Iterator[Connection]:
    """One transaction: commit on success, roll back on error, translate SQLAlchemy errors.

    Connection problems, SQLite's "database is locked" and PostgreSQL's lock and
    statement timeouts (``lock_not_available``, ``query_canceled``: psycopg raises them
    as ``OperationalError``) become ``DatabaseUnavailableError`` (a
    ``StoreUnavailableError``); constraint violations
    become ``ConflictError``; any other ``SQLAlchemyError`` becomes ``StoreError``.
    Errors raised by the body that are not SQLAlchemy's pass through unchanged (after
    the rollback). A ``DatabaseUnavailableError`` is logged at warning here with the
    driver's text, which its message keeps for the CLI: the HTTP API answers callers a
    fixed message instead (the text names the database's host, port and user).

    On a SQLite file store every scope, reads too (the readiness ping), checks before its
    ``COMMIT`` that the file is still the one opened (:class:`FileIdentity`): removed or
    replaced, the scope is rolled back and fails with ``DatabaseUnavailableError``.

    On PostgreSQL a scope of the scoring log's writes (:data:`BOUNDED_WRITE_OPTION`) has
    a client-side deadline as well, from checkout to commit (see :func:`within_deadline`);
    any other scope has it on its checkout alone (see :func:`checked_out_within`).
    """
    options = engine.get_execution_options()
    deadline_s: float | None = options.get(_DEADLINE_OPTION)  # None on SQLite
    identity: FileIdentity | None = options.get(_IDENTITY_OPTION)  # a SQLite file's
    try:
        if deadline_s is None:
            with engine.begin() as conn:
                yield conn
                if identity is not None:  # raising here rolls back
                    identity.check(operation)
        elif options.get(BOUNDED_WRITE_OPTION):
            with within_deadline(engine, operation, deadline_s) as conn:
                yield conn
        else:
            with checked_out_within(engine, operation, deadline_s) as conn:
                yield conn
    except IntegrityError as exc:
        raise ConflictError(f"store {operation}: conflicts with stored data: {exc.orig}") from exc
    except DataError as exc:
        raise InvalidValueError(
            f"store {operation}: a value the database cannot hold: {exc.orig}"
        ) from exc
    except (OperationalError, InterfaceError) as exc:
        access = sqlite_access_problem(engine, exc.orig)
        if access is not None:  # still unavailable: a daemon's request answers 503
            log_unavailable("store %s: %s", operation, access)
            raise DatabaseUnavailableError(access) from exc
        log_unavailable("store %s: database unavailable: %s", operation, exc.orig)
        raise DatabaseUnavailableError(
            f"store {operation}: database unavailable: {exc.orig}"
        ) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            log_unavailable("store %s: database connection lost: %s", operation, exc.orig)
            raise DatabaseUnavailableError(
                f"store {operation}: database connection lost: {exc.orig}"
            ) from exc
        if _unavailable(exc.orig):
            log_unavailable("store %s: database unavailable: %s", operation, exc.orig)
            raise DatabaseUnavailableError(
                f"store {operation}: database unavailable: {exc.orig}"
            ) from exc
        if _schema_missing(exc.orig):
            log_unavailable("store %s: %s (%s)", operation, SCHEMA_MISSING, exc.orig)
            raise DatabaseUnavailableError(
                f"store {operation}: {SCHEMA_MISSING} ({exc.orig})"
            ) from exc
        raise StoreError(f"store {operation} failed: {exc.orig}") from exc
    except (PoolTimeoutError, DisconnectionError) as exc:
        # every pooled connection held past the pool's timeout (a lock stall backs the
        # pool up): it was a StoreError (500), and the recorder retried a group record
        # by record, each waiting out the pool's timeout again
        log_unavailable("store %s: database unavailable: %s", operation, exc)
        raise DatabaseUnavailableError(f"store {operation}: database unavailable: {exc}") from exc
    except SQLAlchemyError as exc:
        raise StoreError(f"store {operation} failed: {exc}") from exc


#: PostgreSQL's SQLSTATEs of a database that cannot take the write now, whatever the
#: data: a read-only transaction (a failover left the URL on a standby; psycopg raises it
#: as InternalError, which was a 500 per request), and the classes of insufficient
#: resources, operator intervention and system errors, and connection exceptions.
_UNAVAILABLE_SQLSTATES = ("25006",)
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")


#: PostgreSQL's SQLSTATEs of a table or column missing: the schema is not the one this
#: build writes (downgraded under it); SQLite raises them as OperationalError, already
#: unavailable. They were a 500 whose body held the SQL.
_SCHEMA_SQLSTATES = ("42P01", "42703")
SCHEMA_MISSING = (
    "a table or column this tunewatch uses is missing: the store's schema is not this "
    "release's (downgraded with `tunewatch migrate --to` while it served?)"
)


def _schema_missing(error: BaseException | None) -> bool:
    return getattr(error, "sqlstate", None) in _SCHEMA_SQLSTATES


def _unavailable(error: BaseException | None) -> bool:
    state = getattr(error, "sqlstate", None)
    return isinstance(state, str) and (
        state in _UNAVAILABLE_SQLSTATES or state[:2] in _UNAVAILABLE_CLASSES
    )


@contextmanager
def sqlite_write(engine: Engine, operation: str) -> Iterator[sqlite3.Cursor]:
    """The scoring log's SQLite write scope: ``BEGIN IMMEDIATE`` … ``COMMIT`` on a pooled
    connection's driver cursor, rolling back on any error and translating sqlite3 errors
    like :func:`transaction`, and checking the file's identity before the ``COMMIT`` as
    it does.

    It exists for the group-commit writer alone: SQLAlchemy's transaction and statement
    machinery costs ~100 µs per commit, several times what SQLite itself needs.
    """
    identity: FileIdentity | None = engine.get_execution_options().get(_IDENTITY_OPTION)
    try:
        pooled = engine.raw_connection()
    except SQLAlchemyError as exc:
        log_unavailable("store %s: database unavailable: %s", operation, exc)
        raise DatabaseUnavailableError(f"store {operation}: database unavailable: {exc}") from exc
    try:
        dbapi = pooled.driver_connection
        assert isinstance(dbapi, sqlite3.Connection)
        cursor = dbapi.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE")
            yield cursor
            if identity is not None:
                identity.check(operation)
            cursor.execute("COMMIT")
        except BaseException:  # cleanup only: rolled back, the error re-raised
            if dbapi.in_transaction:
                dbapi.rollback()
            raise
    except sqlite3.IntegrityError as exc:
        raise ConflictError(f"store {operation}: conflicts with stored data: {exc}") from exc
    except sqlite3.OperationalError as exc:
        log_unavailable("store %s: database unavailable: %s", operation, exc)
        raise DatabaseUnavailableError(f"store {operation}: database unavailable: {exc}") from exc
    except sqlite3.Error as exc:
        raise StoreError(f"store {operation} failed: {exc}") from exc
    finally:
        pooled.close()


def dialect_insert(conn: Connection, table: Table) -> sqlite.Insert | postgresql.Insert:
    """The dialect's own ``INSERT`` (it has ``on_conflict_do_nothing``)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
