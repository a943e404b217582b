"""Run the Alembic migrations programmatically (no alembic.ini at runtime)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from .._errors import StoreError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Arbitrary constant key for pg_advisory_xact_lock: serialises concurrent migrators.
_PG_MIGRATION_LOCK = 0x7475_6E65  # "tune"

logger = logging.getLogger(__name__)


def alembic_config(conn: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    return config


def upgrade_to_head(conn: Connection) -> None:
    """Upgrade the database on ``conn`` (already in a transaction) to the newest revision.

    A store at a revision this build does not know (a newer tunewatch migrated it) is
    refused with ``StoreError`` (``schema_too_new``) and left as it is.
    """
    if conn.dialect.name == "postgresql":
        # Waits with no limit, unlike the store's other transactions: for a concurrent
        # migrator to finish, and for the locks its DDL needs.
        conn.execute(text("SET LOCAL lock_timeout = 0"))
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    stored = _stored_revisions(conn)
    known, head = _revisions()
    _refuse_unknown_revisions(stored, known, head)
    if stored == {head}:
        return
    command.upgrade(alembic_config(conn), "head")
    # Alembic logs a line per revision (the CLI shows those with --verbose only)
    if stored:
        logger.info("store schema upgraded from revision %s to %s", ", ".join(sorted(stored)), head)
    else:
        logger.info("store schema created at revision %s", head)


def _stored_revisions(conn: Connection) -> set[str]:
    if not inspect(conn).has_table("alembic_version"):  # a new store
        return set()
    return set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


@functools.cache
def _revisions() -> tuple[frozenset[str], str | None]:
    """The revisions this build knows and its head, read once per process: reading the
    scripts cost 18 ms of every store's opening, most of opening one at the head."""
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    return frozenset(r.revision for r in script.walk_revisions()), script.get_current_head()


def _refuse_unknown_revisions(stored: set[str], known: frozenset[str], head: str | None) -> None:
    unknown = sorted(stored - known)
    if not unknown:
        return
    raise StoreError(
        f"the store's schema is at revision {', '.join(map(repr, unknown))}, which this "
        f"tunewatch does not know (its newest is {head!r}): a newer tunewatch migrated it. "
        "Run that version or a newer one (upgrade tunewatch), or first downgrade the store "
        f"to revision {head!r} with the newer version's migrations",
        code="schema_too_new",
    )
