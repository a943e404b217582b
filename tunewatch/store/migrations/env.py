"""Alembic environment: runs on the connection the store passes in ``config.attributes``,
with the version table in the store's schema (``version_table_schema``: PostgreSQL's
current schema, which ``tunewatch.store._migrate.alembic_config`` reads)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from tunewatch.store._schema import metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "tunewatch migrations run through Store.migrate(), which passes a connection "
            "in config.attributes['connection']"
        )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        version_table_schema=context.config.attributes.get("version_table_schema"),
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("tunewatch migrations do not support offline (--sql) mode")
run_migrations_online()
