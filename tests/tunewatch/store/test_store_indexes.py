"""The queries evaluation runs every few minutes are served by an index, not a scan.

``Store.latencies`` reads one model's outputs since a window's start, and
``Store.last_action`` one model's newest action event of some types: without an index
each walked every output (or event) the model ever had (1.9 s at a million outputs).
The plans are read from the database itself for the statements the store sends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from tunewatch.store import Store


@contextmanager
def _captured(store: Store) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def before(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, params))

    sa.event.listen(store.engine, "before_cursor_execute", before)  # reads too
    try:
        yield statements
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", before)


def _plan(store: Store, call: Callable[[], object], table: str) -> str:
    with _captured(store) as statements:
        call()
    [(statement, params)] = [(s, p) for s, p in statements if f"FROM {table}" in s]
    with store.engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        cursor = raw.cursor()
        if store.engine.dialect.name == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {statement}", params)
            return " ".join(str(row[-1]) for row in cursor.fetchall())
        cursor.execute("SET enable_seqscan = off")  # the tables are tiny here
        cursor.execute(f"EXPLAIN {statement}", params)
        return " ".join(str(row[0]) for row in cursor.fetchall())


def test_latencies_since_a_time_use_the_outputs_time_index(model_store: Store) -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    plan = _plan(model_store, lambda: model_store.latencies("m", since=since), "outputs")
    assert "ix_outputs_model_created_at" in plan, plan


def test_the_last_action_uses_the_events_type_index(model_store: Store) -> None:
    plan = _plan(
        model_store,
        lambda: model_store.last_action("m", trigger="drift_detected", outcomes=["taken"]),
        "events",
    )
    assert "ix_events_model_type_id" in plan, plan


def test_the_newest_latencies_of_a_version_use_the_outputs_time_index(
    model_store: Store,
) -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    plan = _plan(
        model_store,
        lambda: model_store.latencies("m", since=since, versions=[1], newest=10_000),
        "outputs",
    )
    assert "ix_outputs_model_created_at" in plan, plan
