"""The dashboard's light reads of the evaluations table, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tunewatch.dashboard._queries import stream_windows, window_ids
from tunewatch.store import Store


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """Model ``m`` with five hourly drift windows (the fourth alarmed) and one decay window."""
    s = Store.open(store_url)
    s.ensure_model(name="m", task="binary", feature_names=["a"])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(5):
        s.add_evaluation(
            model="m",
            version=None,
            kind="drift",
            status="drift" if i == 3 else "ok",
            window_start=start + timedelta(hours=i),
            window_end=start + timedelta(hours=i + 1),
            payload={"alarm": i == 3, "drifted_share": i / 4, "columns": [{"column": "a"}]},
        )
    s.add_evaluation(
        model="m",
        version=None,
        kind="decay",
        status="ok",
        window_start=None,
        window_end=start,
        payload={"alarm": True},
    )
    try:
        yield s
    finally:
        s.close()


def test_window_ids_are_the_newest_of_the_kind_oldest_first(store: Store) -> None:
    newest = store.list_evaluations("m", kind="drift", limit=3)
    assert window_ids(store, "m", "drift", limit=3) == [r.id for r in reversed(newest)]
    assert len(window_ids(store, "m", "drift", limit=100)) == 5


def test_stream_windows_yields_the_newest_payloads_newest_first_in_small_chunks(
    store: Store,
) -> None:
    streamed = list(stream_windows(store, "m", "drift", limit=4, chunk=3))
    newest = store.list_evaluations("m", kind="drift", limit=4)
    assert [ref.id for ref, _ in streamed] == [r.id for r in newest]
    assert [ref.window_end for ref, _ in streamed] == [r.window_end for r in newest]
    assert [p["drifted_share"] for _, p in streamed] == [1.0, 0.75, 0.5, 0.25]
    assert [ref.alarm for ref, _ in streamed] == [False, True, False, False]
    assert streamed[0][1]["columns"] == [{"column": "a"}]
