"""The test suite's PostgreSQL schemas are dropped even when a test leaked a session in a
transaction on one of their tables: such a session made ``DROP SCHEMA`` wait for ever,
and a CI run hung with every worker idle (an Optuna heartbeat thread the outage test cut
left its session open through the proxy)."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.conftest import PG_ADMIN, drop_pg_schema


@pytest.mark.postgres
def test_a_schema_a_leaked_transaction_holds_is_dropped_ending_that_session(
    pg_available: None,
) -> None:
    schema = f"tw_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        admin.execute(f'CREATE TABLE "{schema}".trials (id int)')
    leaked = psycopg.connect(PG_ADMIN)  # a transaction left open on the table
    try:
        leaked.execute(f'SELECT * FROM "{schema}".trials')
        drop_pg_schema(schema, end_holders=True)
        with psycopg.connect(PG_ADMIN) as check:
            gone = check.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)
            ).fetchone()
        assert gone == (0,)
        with pytest.raises(psycopg.OperationalError):
            leaked.execute("SELECT 1")  # its session was ended
    finally:
        leaked.close()
