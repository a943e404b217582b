"""Run the Alembic migrations programmatically (no alembic.ini at runtime)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Arbitrary constant key for pg_advisory_xact_lock: serialises concurrent migrators.
_PG_MIGRATION_LOCK = 0x7475_6E65  # "tune"


def alembic_config(conn: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    return config


def upgrade_to_head(conn: Connection) -> None:
    """Upgrade the database on ``conn`` (already in a transaction) to the newest revision."""
    if conn.dialect.name == "postgresql":
        # Waits with no limit, unlike the store's other transactions: for a concurrent
        # migrator to finish, and for the locks its DDL needs.
        conn.execute(text("SET LOCAL lock_timeout = 0"))
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    command.upgrade(alembic_config(conn), "head")
