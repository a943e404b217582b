"""A PostgreSQL tuning storage prepares no statements on the server (psycopg's
``prepare_threshold=None``), as the store does: behind PgBouncer in transaction pooling a
statement psycopg prepared on one server connection (after its fifth run) was later sent
to another, and tuning failed with ``DuplicatePreparedStatement``, which Optuna reported
as a ``StorageInternalError`` ("invalid data in the commit")."""

from __future__ import annotations

import optuna
import psycopg
import pytest

from retune._optuna import close_storage, make_storage

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("scheme", ["postgresql+psycopg://", "postgresql://"])
def test_a_postgresql_storage_prepares_no_statements_on_the_server(
    pg_url: str, scheme: str
) -> None:
    """With the driver named, and with SQLAlchemy's default (psycopg, from 2.1)."""
    url = scheme + pg_url.split("://", 1)[1]
    backend = make_storage(url, heartbeat_interval=None)
    try:
        assert isinstance(backend, optuna.storages.RDBStorage)
        for _ in range(8):  # past psycopg's default threshold of five runs
            backend.get_all_studies()
        raw = backend.engine.raw_connection()
        try:
            driver = raw.driver_connection
            assert isinstance(driver, psycopg.Connection)
            threshold = driver.prepare_threshold
            prepared = driver.execute("SELECT name FROM pg_prepared_statements").fetchall()
        finally:
            raw.close()
    finally:
        close_storage(backend)
    assert threshold is None
    assert prepared == []
