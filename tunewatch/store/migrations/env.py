"""Alembic environment: runs on the connection the store passes in ``config.attributes``."""

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
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("tunewatch migrations do not support offline (--sql) mode")
run_migrations_online()
