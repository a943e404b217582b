"""Feedback takes the store's write lock only to insert new labels.

On SQLite ``add_labels`` ran whole in ``BEGIN IMMEDIATE``: the request look-ups, the
stored labels' read and every comparison held the write lock, also when nothing was to
be written (a replay, unknown ids). A 10k-item batch held it 250-300 ms, and scoring's
group commit, waiting in SQLite's busy handler, kept missing the gaps between batches: one
labeller replaying a backfill cut scoring from 4,340 answers in 8 s to 185 (p99 554 ms).
Now the items are classified in a read transaction, and only the insert of the new ones
(each request's presence checked again, as a retention purge may have deleted it) and a
read-back of labels inserted concurrently take it.

On PostgreSQL the stored labels were read joined to their requests (for ``n_rows``,
already read): with a new model's rows not yet in the planner's statistics, a nested loop
scanned all of its requests for each of 500 ids, and a 10k-item replay took 19-57 s.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event

from tunewatch._errors import StoreUnavailableError
from tunewatch.store import LabelItem, RequestRecord, Store

MODEL = "m"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path}/tw.db", lock_timeout_s=0.2) as s:
        s.ensure_model(name=MODEL, task="binary", feature_names=["a"])
        s.write_records(
            [
                RequestRecord(
                    model=MODEL,
                    request_id=f"r{i}",
                    received_at=datetime(2026, 1, 1, tzinfo=UTC),
                    source="infer",
                    n_rows=1,
                    n_cols=1,
                    inputs=np.zeros((1, 1), np.float32).tobytes(),
                )
                for i in range(10)
            ],
            [],
        )
        s.add_labels(MODEL, [LabelItem(f"r{i}", 1.0) for i in range(5)])
        yield s


def _locked(tmp_path: Path) -> sqlite3.Connection:
    """Another connection holding SQLite's write lock (the recorder's commit, say)."""
    other = sqlite3.connect(tmp_path / "tw.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_replays_and_unknown_ids_are_answered_while_another_writer_holds_the_lock(
    store: Store, tmp_path: Path
) -> None:
    other = _locked(tmp_path)
    try:
        replay = [LabelItem(f"r{i}", 1.0) for i in range(5)]
        other_label = [LabelItem("r0", 0.0)]
        unknown = [LabelItem("nobody", 1.0)]
        assert store.add_labels(MODEL, replay) == ["duplicate"] * 5
        assert store.add_labels(MODEL, other_label) == ["conflict"]
        assert store.add_labels(MODEL, unknown) == ["unknown_request"]
        with pytest.raises(StoreUnavailableError):  # a new label waits for the lock
            store.add_labels(MODEL, [LabelItem("r7", 1.0)])
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.add_labels(MODEL, [LabelItem("r7", 1.0), LabelItem("r0", 1.0)]) == [
        "created",
        "duplicate",
    ]


def test_the_stored_labels_are_read_without_their_requests(store: Store) -> None:
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        store.add_labels(MODEL, [LabelItem(f"r{i}", 1.0) for i in range(8)])
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "labels" in s]
    assert reads and all("requests" not in s for s in reads), reads
