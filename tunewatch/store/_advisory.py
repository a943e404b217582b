"""PostgreSQL's transaction-scoped advisory locks, keyed by the store's schema.

An advisory lock belongs to the database, not to a schema: keyed by a constant, the job
queue's lock of one store held up every other store in the database (two deployments in
two schemas, or the test suite's stores side by side), and a wait longer than the lock
timeout failed a quota check or an event append with ``StoreUnavailableError``. Each key
here is a 64-bit hash of the schema (``current_schema()``) and the lock's name and parts,
so stores in other schemas never meet; two names or parts colliding only wait for each
other. (The migration lock keeps its constant key: see :mod:`._migrate`.)"""

from __future__ import annotations

from sqlalchemy import Connection, Text, func, select


def lock_in_schema(conn: Connection, name: str, *parts: str) -> None:
    """Take ``(schema, name, *parts)``'s advisory lock, held until ``conn``'s transaction
    ends; PostgreSQL only (on SQLite ``BEGIN IMMEDIATE`` serialises every writer)."""
    key = func.json_build_array(func.current_schema(), name, *parts).cast(Text)
    conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))
