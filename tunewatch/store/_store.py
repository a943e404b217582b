"""``Store``: the thin front of the persistence layer.

Each public method opens one transaction through :func:`transaction` (which commits,
rolls back and translates SQLAlchemy errors) and delegates to a module named after the
concern. This module holds the lifecycle: construction (the engines, and a SQLite
file's WAL checkpointer), ``open``, ``migrate``, ``ping``, ``close``, the transactions
(``_tx``, ``_read``) and the database's clock. The other methods come from one facade
mixin per concern, each on the base ``_front_base.StoreFront``: ``_front_registry``
(models, versions, artefacts), ``_front_scoring_log`` (requests, outputs, labels, run
tallies, the retention purge, live-split checks), ``_front_audit`` (events, audit,
tokens, dashboard sessions), ``_front_evaluation`` (leases, evaluations, windows,
latencies), ``_front_governance`` (approvals, rollback), ``_front_jobs`` (jobs,
alert episodes) and ``_front_tags`` (version tags).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Literal, Self

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import SQLAlchemyError

from .._errors import DatabaseUnavailableError, StoreError
from . import _clock
from ._checkpoint import WalCheckpointer
from ._engine import (
    BOUNDED_WRITE_OPTION,
    DEFAULT_LOCK_TIMEOUT_S,
    READ_ONLY_OPTION,
    SqliteSynchronous,
    log_unavailable,
    make_engine,
    sqlite_file,
    transaction,
)
from ._front_audit import AuditFront
from ._front_evaluation import EvaluationFront
from ._front_governance import GovernanceFront
from ._front_jobs import JobsFront
from ._front_registry import RegistryFront
from ._front_scoring_log import ScoringLogFront
from ._front_tags import TagsFront
from ._migrate import (
    ArtefactKeeper,
    Migration,
    behind_this_build,
    log_migration,
    migrate_to,
    needs_migration,
    newest_revision,
)
from ._types import utcnow


class Store(
    RegistryFront,
    ScoringLogFront,
    AuditFront,
    EvaluationFront,
    GovernanceFront,
    JobsFront,
    TagsFront,
):
    """SQLite (embedded default) or PostgreSQL store for the registry, log and audit trail.

    Thread-safe: share one instance across threads. After ``fork`` call
    ``store.engine.dispose(close=False)`` in the child. A SQLite file store checkpoints
    its WAL from a thread of its own (:class:`WalCheckpointer`), never in a commit.
    """

    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: SqliteSynchronous = "NORMAL",
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> None:
        path = sqlite_file(url)
        try:
            self._engine = make_engine(
                url,
                sqlite_synchronous=sqlite_synchronous,
                wal_autocheckpoint=path is None,
                lock_timeout_s=lock_timeout_s,
            )
        except SQLAlchemyError as exc:
            raise StoreError(f"store `url` is not usable: {exc}") from exc
        self._read_engine = self._engine.execution_options(**{READ_ONLY_OPTION: True})
        # The scoring log's group commit has a connection of its own (one writer thread):
        # from the shared pool, store traffic that held every connection (label writes
        # queued on a locked row, long reads) held each scoring answer for the pool's 30 s.
        # (Not an in-memory or URI-named SQLite database: another engine's connections
        # would open another database.)
        log_engine = self._engine
        if path is not None or self._engine.dialect.name != "sqlite":
            try:
                log_engine = make_engine(
                    url,
                    sqlite_synchronous=sqlite_synchronous,
                    wal_autocheckpoint=path is None,
                    lock_timeout_s=lock_timeout_s,
                    connections=1,
                )
            except SQLAlchemyError as exc:
                self._engine.dispose()
                raise StoreError(f"store `url` is not usable: {exc}") from exc
        self._log_engine = log_engine.execution_options(**{BOUNDED_WRITE_OPTION: True})
        self._checkpointer: WalCheckpointer | None = None
        if path is not None:
            self._checkpointer = WalCheckpointer(path)
            self._checkpointer.start()

    @classmethod
    def open(
        cls,
        url: str,
        *,
        sqlite_synchronous: SqliteSynchronous = "NORMAL",
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> Store:
        """Construct and migrate to the newest schema. ``lock_timeout_s``: see
        :func:`~tunewatch.store.make_engine`."""
        store = cls(url, sqlite_synchronous=sqlite_synchronous, lock_timeout_s=lock_timeout_s)
        try:
            store.migrate()
        except BaseException:  # cleanup only: the store closed, the error re-raised
            store.close()
            raise
        return store

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def log_engine(self) -> Engine:
        """The scoring log's group commit's own engine (one connection; :attr:`engine`
        for an in-memory SQLite database)."""
        return self._log_engine.engine

    @property
    def dialect(self) -> Literal["sqlite", "postgresql"]:
        return "postgresql" if self._engine.dialect.name == "postgresql" else "sqlite"

    def migrate(
        self, *, to: str | None = None, keep_artefacts: ArtefactKeeper | None = None
    ) -> Migration | None:
        """Upgrade or downgrade the schema to revision ``to`` (default: the newest) and
        return what was done; ``None``, a no-op, when already there. The migration is
        logged once committed: logged inside the transaction, a commit that failed (a
        full disk) left a log saying "upgraded" of a store still at its revision.
        ``keep_artefacts``: given every stored artefact before a downgrade drops the
        table holding them (see :func:`~tunewatch.store._migrate.migrate_to`).

        The revision is read first in a read transaction: a store already at ``to`` is
        opened without the write lock, so a command that only reads does not queue
        behind SQLite's writer (nor hold up its group commit). The write transaction
        (and PostgreSQL's migration lock) is taken only to migrate, and the revision
        read again in it. ``StoreError``: ``to`` is not a revision this build knows
        (``unknown_revision``), or the store is at one it does not (``schema_too_new``); on
        PostgreSQL, the connection has no current schema (``no_store_schema``).
        """
        with self._read("migrate") as conn:
            if not needs_migration(conn, to):
                return None
        with self._tx("migrate") as conn:
            migration = migrate_to(conn, to, keep_artefacts=keep_artefacts)
        if migration is not None:
            log_migration(migration)
        return migration

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.log_engine.dispose()
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def ping(self) -> None:
        """Raise ``StoreUnavailableError`` if the database cannot be reached, or if its
        schema was downgraded below this build's (:func:`behind_this_build`: a
        ``tunewatch migrate --to`` while this process serves; its writes fail)."""
        with self._read("ping") as conn:
            behind = behind_this_build(conn)
        if behind is not None:
            message = (
                f"the store's schema is at revision {behind}, older than this tunewatch's "
                f"{newest_revision()!r}: it was downgraded (`tunewatch migrate --to`) while "
                "this process served. Stop this release's processes (run the release that "
                "schema belongs to), or upgrade the store back (`tunewatch migrate`)"
            )
            log_unavailable("store ping: %s", message)
            raise DatabaseUnavailableError(message)

    @contextmanager
    def _tx(self, operation: str) -> Iterator[Connection]:
        with transaction(self._engine, operation) as conn:
            yield conn

    @contextmanager
    def _read(self, operation: str) -> Iterator[Connection]:
        with transaction(self._read_engine, operation) as conn:
            yield conn

    def database_now(self) -> datetime:
        """The database's clock, read now: the time hosts compare (see :mod:`._clock`)."""
        with self._read("database_now") as conn:
            now: datetime = conn.execute(select(_clock.db_now(conn))).scalar_one()
            return now

    def clock_offset(self, now: Callable[[], datetime] = utcnow) -> timedelta:
        """The database's clock minus this process's (see :func:`._clock.clock_offset`)."""
        with self._read("clock_offset") as conn:
            return _clock.clock_offset(conn, now)
