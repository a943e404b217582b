"""Migrations: idempotent, and they build exactly the tables ``_schema.metadata`` declares."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from tunewatch.store import Store, metadata
from tunewatch.store._migrate import alembic_config


def test_migrate_is_idempotent_and_matches_metadata(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        store.migrate()
        store.migrate()
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
            head = ScriptDirectory.from_config(alembic_config(conn)).get_current_head()
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [
                (head,)
            ]
            assert head is not None and int(head) >= 2
            assert conn.execute(sa.text("SELECT id, hash FROM audit_head")).all() == [(1, "0" * 64)]
    finally:
        store.close()
