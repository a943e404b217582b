"""Run the Alembic migrations programmatically (no alembic.ini at runtime).

On PostgreSQL the store is its connection's current schema (``current_schema()``: the
first schema on the search_path that exists and the user may use), the one new tables go
to. Its ``alembic_version`` is looked for and read there only: unqualified, a store with
another store's schema later on its search_path found that store's version table and
"upgraded" it, its new tables landing in its own schema.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, column, inspect, select, table, text

from .._errors import StoreError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Arbitrary constant key for pg_advisory_xact_lock: serialises concurrent migrators.
_PG_MIGRATION_LOCK = 0x7475_6E65  # "tune"

#: The revision that made the ``artefacts`` table: a downgrade below it drops the table,
#: on PostgreSQL the only copy of an artefact registered from a host whose ``data_dir``
#: is gone.
ARTEFACTS_REVISION = "0014"

logger = logging.getLogger(__name__)


def alembic_config(conn: Connection) -> Config:
    """Alembic's configuration for running on ``conn``, with the version table in the
    store's schema (:func:`store_schema`)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    config.attributes["version_table_schema"] = store_schema(conn)
    return config


def store_schema(conn: Connection) -> str | None:
    """The PostgreSQL schema the store is (``current_schema()``); None on SQLite.

    Refuses (``StoreError``, ``no_store_schema``) a connection with no current schema:
    its search_path names no schema that exists and the user may use."""
    if conn.dialect.name != "postgresql":
        return None
    schema, search_path = conn.execute(
        text("SELECT current_schema(), current_setting('search_path')")
    ).one()
    if schema is None:
        raise StoreError(
            "a PostgreSQL store lives in its connection's current schema (the first schema "
            "on the search_path that exists and the user may use), and there is none: "
            f"search_path is {search_path!r}. Create the schema, or name an existing one "
            "in `store.url` (?options=-csearch_path%3D<schema>)",
            code="no_store_schema",
        )
    return str(schema)


def needs_migration(conn: Connection, to: str | None = None) -> bool:
    """Whether the store on ``conn`` is anywhere but revision ``to`` (default: this
    build's newest). Only reads, so a read transaction will do: a store already there is
    opened without the write lock.

    Refuses (``StoreError``) a ``to`` this build does not know (``unknown_revision``) and
    a store at a revision it does not know (``schema_too_new``)."""
    history = _history()
    target = history.target(to)
    stored = _stored_revisions(conn, store_schema(conn))
    history.refuse_unknown(stored)
    return stored != {target}


def behind_this_build(conn: Connection) -> str | None:
    """The revision the store on ``conn`` is at when it is one this build knows older
    than its newest (``None`` otherwise: at the newest, or at a newer one this build does
    not know, as while a newer release upgrades the store under it, whose migrations
    add). A store behind a running process was downgraded under it: its writes fail."""
    history = _history()
    stored = _stored_revisions(conn, store_schema(conn))
    if not stored or stored == {history.head} or stored - history.parents.keys():
        return None
    return ", ".join(sorted(stored))


@dataclass(frozen=True)
class StoredArtefact:
    """One row of the store's ``artefacts`` table, as read: ``data`` is not verified."""

    sha256: str
    suffix: str
    data: bytes


#: Given every row of ``artefacts`` before a downgrade drops the table (see
#: :func:`migrate_to`); raises to refuse the downgrade.
ArtefactKeeper = Callable[[Iterator[StoredArtefact]], None]


@dataclass(frozen=True)
class Migration:
    """What :func:`migrate_to` did: the revisions the store was at (none: it was created
    by this migration), the one it is at now, and whether that was a downgrade."""

    from_revisions: tuple[str, ...]
    to: str
    downgrade: bool


def log_migration(migration: Migration) -> None:
    """Log ``migration`` once its transaction has committed (``Store.migrate``): one
    line, where Alembic logs one per revision (the CLI shows those with --verbose only)."""
    if not migration.from_revisions:
        logger.info("store schema created at revision %s", migration.to)
    else:
        logger.info(
            "store schema %s from revision %s to %s",
            "downgraded" if migration.downgrade else "upgraded",
            ", ".join(migration.from_revisions),
            migration.to,
        )


def migrate_to(
    conn: Connection, to: str | None = None, *, keep_artefacts: ArtefactKeeper | None = None
) -> Migration | None:
    """Upgrade or downgrade the store on ``conn`` (already in a writing transaction) to
    revision ``to`` (default: this build's newest), and say what was done; ``None`` (a
    no-op) when it is there. Nothing is logged: the caller logs the migration once its
    transaction has committed (a failed commit left the store where it was).

    The revision is read again here, under the write lock (SQLite's ``BEGIN
    IMMEDIATE``; PostgreSQL's advisory migration lock): another process may have
    migrated since :func:`needs_migration` read it. A store at a revision this build
    does not know (a newer tunewatch migrated it) is refused with ``StoreError``
    (``schema_too_new``) and left as it is.

    ``keep_artefacts``: when the downgrade drops the ``artefacts`` table (``to`` is below
    :data:`ARTEFACTS_REVISION`), called first with its every row, read one at a time in
    this transaction, the table locked against writes until it is dropped (no artefact
    put meanwhile is dropped unseen). What it raises rolls the migration back: nothing
    is downgraded. Without it the rows are dropped with the table.
    """
    history = _history()
    target = history.target(to)
    if conn.dialect.name == "postgresql":
        # Waits with no limit, unlike the store's other transactions: for a concurrent
        # migrator to finish, and for the locks its DDL needs.
        conn.execute(text("SET LOCAL lock_timeout = 0"))
        # nor is a statement cut off by a statement_timeout the role or the URL sets (a
        # least-privilege default): it ended a lock wait or a long index build, the
        # migration failing as "database unavailable"
        conn.execute(text("SET LOCAL statement_timeout = 0"))
        # nor is it ended idle: a migration may work in Python between its statements
        conn.execute(text("SET LOCAL idle_in_transaction_session_timeout = 0"))
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    schema = store_schema(conn)
    stored = _stored_revisions(conn, schema)
    history.refuse_unknown(stored)
    if stored == {target}:
        return None
    config = alembic_config(conn)
    downgrade = bool(stored) and all(target in history.ancestors(r) for r in stored)
    if downgrade:
        drops_artefacts = ARTEFACTS_REVISION not in history.ancestors(target) | {target}
        if (
            keep_artefacts is not None
            and drops_artefacts
            and inspect(conn).has_table("artefacts", schema=schema)
        ):
            keep_artefacts(_artefact_rows(conn, schema))
        command.downgrade(config, target)
    else:
        command.upgrade(config, target)
    return Migration(from_revisions=tuple(sorted(stored)), to=target, downgrade=downgrade)


def _artefact_rows(conn: Connection, schema: str | None) -> Iterator[StoredArtefact]:
    """The ``artefacts`` table's rows, their bytes read one row at a time as iterated. On
    PostgreSQL the table is locked against writes first, until the transaction ends
    (SQLite's writing transaction is its only writer already)."""
    blobs = table("artefacts", column("sha256"), column("suffix"), column("data"), schema=schema)
    if conn.dialect.name == "postgresql":
        name = conn.dialect.identifier_preparer.format_table(blobs)
        conn.execute(text(f"LOCK TABLE {name} IN SHARE MODE"))
    keys = conn.execute(
        select(blobs.c.sha256, blobs.c.suffix).order_by(blobs.c.sha256, blobs.c.suffix)
    ).all()

    def rows() -> Iterator[StoredArtefact]:
        for sha256, suffix in keys:
            data = conn.execute(
                select(blobs.c.data).where(blobs.c.sha256 == sha256, blobs.c.suffix == suffix)
            ).scalar_one()
            yield StoredArtefact(sha256=str(sha256), suffix=str(suffix), data=bytes(data))

    return rows()


def _stored_revisions(conn: Connection, schema: str | None) -> set[str]:
    if not inspect(conn).has_table("alembic_version", schema=schema):  # a new store
        return set()
    version = table("alembic_version", column("version_num"), schema=schema)
    return {str(v) for v in conn.execute(select(version.c.version_num)).scalars()}


@dataclass(frozen=True)
class _History:
    """The revisions this build knows (oldest first), each one's parents, and the newest."""

    revisions: tuple[str, ...]
    parents: dict[str, tuple[str, ...]]
    head: str

    def target(self, to: str | None) -> str:
        if to is None:
            return self.head
        if to not in self.parents:
            raise StoreError(
                f"`to` must be a revision this tunewatch knows: {', '.join(self.revisions)} "
                f"(the newest last); got {to!r}",
                code="unknown_revision",
            )
        return to

    def ancestors(self, revision: str) -> frozenset[str]:
        """The revisions ``revision`` was built on, itself excluded."""
        seen: set[str] = set()
        todo = list(self.parents[revision])
        while todo:
            parent = todo.pop()
            if parent not in seen:
                seen.add(parent)
                todo.extend(self.parents[parent])
        return frozenset(seen)

    def refuse_unknown(self, stored: set[str]) -> None:
        unknown = sorted(stored - self.parents.keys())
        if not unknown:
            return
        raise StoreError(
            f"the store's schema is at revision {', '.join(map(repr, unknown))}, which this "
            f"tunewatch does not know (its newest is {self.head!r}): a newer tunewatch "
            "migrated it. Run that version or a newer one (upgrade tunewatch); or, to keep "
            "this one, downgrade the store first: with the newer tunewatch, run "
            f"`tunewatch migrate --to {self.head!r}`",
            code="schema_too_new",
        )


def newest_revision() -> str:
    """This build's newest schema revision."""
    return _history().head


@functools.cache
def _history() -> _History:
    """Read once per process: reading the scripts cost 18 ms of every store's opening,
    most of opening one at the head."""
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()  # raises if the scripts have more than one head
    if head is None:
        raise StoreError(f"no migration scripts in {MIGRATIONS_DIR}")
    newest_first = list(script.walk_revisions())
    return _History(
        revisions=tuple(s.revision for s in reversed(newest_first)),
        parents={s.revision: _as_tuple(s.down_revision) for s in newest_first},
        head=head,
    )


def _as_tuple(down_revision: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    if down_revision is None:
        return ()
    if isinstance(down_revision, str):
        return (down_revision,)
    return tuple(down_revision)
