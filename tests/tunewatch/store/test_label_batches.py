"""A large feedback batch is inserted in short write transactions, and its look-ups are
planned for the ids they are given.

SQLite: a 10k-label batch was inserted in one ``BEGIN IMMEDIATE`` holding the write lock
~150 ms, and scoring's group commit waited behind it (p99 2.4 ms idle, 188-195 ms while a
labeller backfilled 10k new labels a request). The new labels are now inserted at most
:data:`LABELS_PER_TRANSACTION` a transaction, each transaction checking its requests again.

PostgreSQL: psycopg prepared the store's statements after five runs, and the server then
kept one generic plan for the 500-id label look-up, made while ``labels`` was empty: it
walked every label of the model on ``ix_labels_model_received_at`` for each chunk (1.04 s
a chunk, 9 ms planned for its ids), and 10k-label batches went from 1.5 s to 19.7 s as
labels accumulated. The store's connections no longer prepare statements.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.sql.dml import Insert

from tunewatch.store import LabelItem, RequestRecord, Store
from tunewatch.store._engine import READ_ONLY_OPTION
from tunewatch.store._records import LABELS_PER_TRANSACTION
from tunewatch.store._schema import labels

MODEL = "m"


def _requests(store: Store, n: int) -> None:
    store.ensure_model(name=MODEL, task="binary", feature_names=["a"])
    for start in range(0, n, 2000):
        store.write_records(
            [
                RequestRecord(
                    model=MODEL,
                    request_id=f"r{i:05d}",
                    received_at=datetime(2026, 1, 1, tzinfo=UTC),
                    source="infer",
                    n_rows=1,
                    n_cols=1,
                    inputs=np.zeros((1, 1), np.float32).tobytes(),
                )
                for i in range(start, min(n, start + 2000))
            ],
            [],
        )


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path}/tw.db") as s:
        yield s


def _is_write(conn: sa.Connection) -> bool:
    return not conn.get_execution_options().get(READ_ONLY_OPTION)


def test_a_10k_label_batch_writes_at_most_1000_labels_per_transaction(
    sqlite_store: Store, tmp_path: Path
) -> None:
    assert LABELS_PER_TRANSACTION <= 1000
    _requests(sqlite_store, 10_000)
    per_transaction: list[int] = []

    def began(conn: sa.Connection) -> None:
        per_transaction.append(0)

    def executing(conn: sa.Connection, clause: Any, multiparams: Any, *args: Any) -> None:
        if isinstance(clause, Insert) and clause.table is labels:
            per_transaction[-1] += max(1, len(multiparams))

    sa.event.listen(sqlite_store.engine, "begin", began)
    sa.event.listen(sqlite_store.engine, "before_execute", executing)
    try:
        items = [LabelItem(f"r{i:05d}", float(i % 2)) for i in range(10_000)]
        statuses = sqlite_store.add_labels(MODEL, items)
    finally:
        sa.event.remove(sqlite_store.engine, "before_execute", executing)
        sa.event.remove(sqlite_store.engine, "begin", began)
    assert statuses == ["created"] * 10_000
    assert sum(per_transaction) == 10_000
    assert max(per_transaction) <= 1000, per_transaction
    raw = sqlite3.connect(tmp_path / "tw.db")
    try:
        assert raw.execute("SELECT count(*) FROM labels").fetchone() == (10_000,)
    finally:
        raw.close()
    replay = sqlite_store.add_labels(MODEL, [LabelItem("r00007", 1.0), LabelItem("r09998", 1.0)])
    assert replay == ["duplicate", "conflict"]


def test_a_request_purged_between_the_batchs_transactions_is_an_unknown_request(
    sqlite_store: Store, tmp_path: Path
) -> None:
    """The request is deleted (by another connection, as a retention purge would) once
    the batch's first write transaction has ended: that item alone is refused."""
    _requests(sqlite_store, 2 * LABELS_PER_TRANSACTION + 10)
    purged = f"r{LABELS_PER_TRANSACTION + 5:05d}"
    writes = 0
    deleted = False

    def began(conn: sa.Connection) -> None:
        nonlocal writes
        writes += _is_write(conn)

    def returned(*args: Any) -> None:  # the connection is back in the pool: committed
        nonlocal deleted
        if writes == 1 and not deleted:
            deleted = True
            other = sqlite3.connect(tmp_path / "tw.db", isolation_level=None)
            try:
                other.execute("DELETE FROM requests WHERE request_id = ?", (purged,))
            finally:
                other.close()

    sa.event.listen(sqlite_store.engine, "begin", began)
    sa.event.listen(sqlite_store.engine.pool, "checkin", returned)
    try:
        ids = [f"r{i:05d}" for i in range(2 * LABELS_PER_TRANSACTION + 10)]
        statuses = sqlite_store.add_labels(
            MODEL, [LabelItem(i, 1.0) for i in ids] + [LabelItem(purged, 0.0)]
        )
    finally:
        sa.event.remove(sqlite_store.engine.pool, "checkin", returned)
        sa.event.remove(sqlite_store.engine, "begin", began)
    assert deleted
    assert writes == 3
    expected = ["unknown_request" if i == purged else "created" for i in ids]
    assert statuses == [*expected, "unknown_request"]
    assert sqlite_store.get_label(MODEL, purged) is None
    assert sqlite_store.get_label(MODEL, ids[-1]) is not None


@pytest.mark.postgres
def test_postgres_label_look_ups_never_run_a_cached_generic_plan(pg_url: str) -> None:
    """Two 10k-label batches (40 look-ups of 500 ids in each table) on a ``labels`` table
    never analysed: after each look-up, the session it ran on holds no generic plan, so
    every look-up was planned for its ids against the table as it is then."""
    with Store.open(pg_url) as store:
        _requests(store, 10_000)
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE labels SET (autovacuum_enabled = false)")
        generic: list[int] = []

        def looked_up(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT") and "FROM labels" in statement:
                plans = cursor.connection.execute(
                    "SELECT coalesce(sum(generic_plans), 0) FROM pg_prepared_statements"
                ).fetchone()
                generic.append(int(plans[0]))

        sa.event.listen(store.engine, "after_cursor_execute", looked_up)
        try:
            for value in (1.0, 1.0):
                items = [LabelItem(f"r{i:05d}", value) for i in range(10_000)]
                store.add_labels(MODEL, items)
        finally:
            sa.event.remove(store.engine, "after_cursor_execute", looked_up)
        assert len(generic) >= 40
        assert max(generic) == 0, generic
