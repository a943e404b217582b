"""Revision 0024, ``version_tags``: a downgrade drops the tags, versions untouched; upgraded
again, the table is empty and takes tags again."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from tunewatch.store import Store
from tunewatch.store._migrate import alembic_config

pytestmark = pytest.mark.new_store


def test_a_downgrade_below_0024_drops_the_tags_and_an_upgrade_starts_empty(
    store_url: str,
) -> None:
    store = Store.open(store_url)
    try:
        store.ensure_model(name="m", task="binary", feature_names=["a"])
        store.add_version(
            model="m", artefact_sha256="1" * 64, hyperparameters={}, size_bytes=1, actor="ci"
        )
        store.set_version_tag("m", 1, "ticket", "RISK-1", actor="alice")
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0023")
            tables = set(sa.inspect(conn).get_table_names())
            versions = conn.execute(sa.text("SELECT model, version FROM model_versions")).all()
            command.upgrade(alembic_config(conn), "head")
        assert "version_tags" not in tables and versions == [("m", 1)]
        assert store.version_tags("m", 1) == []
        assert store.set_version_tag("m", 1, "ticket", "RISK-1", actor="alice") is True
        assert [e.details["key"] for e in store.audit_log(limit=10, action="set_tag")] == [
            "ticket",
            "ticket",
        ]  # the audit log keeps the dropped tag's entry
    finally:
        store.close()
