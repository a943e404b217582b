"""On PostgreSQL a window is read through a server-side cursor, planned for the rows the
window is likely to hold of the model's history.

Planned for every row, a one-day window of a model with 45 days of history was joined by
scanning every model's outputs and hashing all of the model's labels: 2.6-3.3 s for a day
that a model with 3 days of history read in 0.41-0.74 s, the same 22,223 requests. A
window that is most of the history is still planned for every row: planned for its first
tenth, its nested loops over the indexes were 2.5x slower over 200k requests. The plans
are read from the database itself, in the read's own transaction, for the statement the
store sends, and the rows the read returns are checked against what was written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from tunewatch.store import Store, Window

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 60
PER_DAY = 1000  # requests a day: 60k requests, 120k outputs, 20k labels
STEP_S = 86400 / PER_DAY
FEATURES = ["a", "b"]


def _seed(store: Store) -> None:
    """``DAYS`` of history of model ``m``, written set-based (the read is under test):
    request ``i`` at ``T0 + i * STEP_S`` with inputs ``(i, i + 1)``, answered by the
    champion (version 1) with ``(2i, 2i + 1)`` and shadowed by version 2; every third
    labelled ``i % 2`` an hour later. A value ``x`` is stored as the bytes of
    ``int4send(x * 256)``: read as float32 they are a number (:func:`_floats`), never NaN.
    """
    store.ensure_model(name="m", task="binary", feature_names=FEATURES)
    series = "generate_series(0, :n - 1) AS i"
    at = ":t0 + make_interval(secs => i * :step)"
    params = {"n": DAYS * PER_DAY, "t0": T0, "step": STEP_S}
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO requests (model, request_id, received_at, source, n_rows, n_cols,"
                f" inputs) SELECT 'm', 'q' || lpad(i::text, 6, '0'), {at}, 'infer', 1, 2,"
                f" int4send(i * 256) || int4send((i + 1) * 256) FROM {series}"
            ),
            params,
        )
        conn.execute(
            sa.text(
                "INSERT INTO outputs (model, request_id, version, role, latency_s, n_rows,"
                " n_cols, \"values\", created_at) SELECT 'm', 'q' || lpad(i::text, 6, '0'),"
                " v.version, v.role, 0.001, 1, 2, int4send((2 * i + v.version - 1) * 256)"
                f" || int4send((2 * i + v.version) * 256), {at} FROM {series}"
                " CROSS JOIN (VALUES (1, 'champion'), (2, 'challenger')) AS v (version, role)"
            ),
            params,
        )
        conn.execute(
            sa.text(
                "INSERT INTO labels (model, request_id, value, received_at)"
                " SELECT 'm', 'q' || lpad(i::text, 6, '0'), to_json((i % 2)::float8),"
                f" {at} + interval '1 hour' FROM {series} WHERE i % 3 = 0"
            ),
            params,
        )
    with store.engine.connect() as conn:  # statistics, as autovacuum keeps them
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "ANALYZE requests, outputs, labels"
        )


def _floats(values: np.ndarray) -> np.ndarray:
    """The float32 numbers the store's bytes of ``int4send(x * 256)`` read as."""
    return np.frombuffer((np.asarray(values) * 256).astype(">i4").tobytes(), np.float32)


@pytest.fixture
def history(pg_url: str) -> Iterator[Store]:
    store = Store.open(pg_url)
    try:
        _seed(store)
        yield store
    finally:
        store.close()


@contextmanager
def _window_plans(store: Store) -> Iterator[list[str]]:
    """The plans of the window statements sent meanwhile, as PostgreSQL plans the read's
    cursor: explained on the read's own connection, in its transaction, just before."""
    plans: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        if "FROM requests LEFT OUTER JOIN outputs" not in statement:
            return
        explained = cursor.connection.execute(
            f"EXPLAIN DECLARE plan_probe CURSOR FOR {statement}", params
        )
        plans.append("\n".join(row[0] for row in explained.fetchall()))

    sa.event.listen(store.engine, "before_cursor_execute", before)
    try:
        yield plans
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", before)


def _read(store: Store, read: Callable[[], Window]) -> tuple[Window, str]:
    with _window_plans(store) as plans:
        window = read()
    [plan] = plans
    return window, plan


def _assert_holds(window: Window, first: int, last: int) -> None:
    """``window`` holds requests ``first`` to ``last`` (inclusive) as written."""
    i = np.arange(first, last + 1)
    np.testing.assert_array_equal(window.request_ids, [f"q{k:06d}" for k in i])
    np.testing.assert_array_equal(window.received_at, T0.timestamp() + i * STEP_S)
    np.testing.assert_array_equal(window.features, _floats(np.stack([i, i + 1], 1)).reshape(-1, 2))
    np.testing.assert_array_equal(
        window.outputs, _floats(np.stack([2 * i, 2 * i + 1], 1)).reshape(-1, 2)
    )
    np.testing.assert_array_equal(window.versions, np.ones_like(i))
    np.testing.assert_array_equal(window.labels, np.where(i % 3 == 0, i % 2, np.nan))
    np.testing.assert_array_equal(
        window.label_received_at, np.where(i % 3 == 0, T0.timestamp() + i * STEP_S + 3600, np.nan)
    )


def test_a_one_day_window_of_a_long_history_is_read_through_the_indexes(
    history: Store,
) -> None:
    day = T0 + timedelta(days=40)
    window, plan = _read(
        history, lambda: history.window("m", n_features=2, start=day, end=day + timedelta(days=1))
    )
    assert "Seq Scan on outputs" not in plan and "Seq Scan on labels" not in plan, plan
    assert "Seq Scan on requests" not in plan, plan
    _assert_holds(window, 40 * PER_DAY, 41 * PER_DAY - 1)


def test_the_newest_rows_of_a_long_history_are_read_through_the_indexes(
    history: Store,
) -> None:
    window, plan = _read(history, lambda: history.window("m", n_features=2, last_n=3000))
    assert "Seq Scan on outputs" not in plan and "Seq Scan on labels" not in plan, plan
    _assert_holds(window, DAYS * PER_DAY - 3000, DAYS * PER_DAY - 1)


def test_a_window_of_most_of_the_history_is_planned_for_every_row(history: Store) -> None:
    """Planned for its first tenth, the whole history was joined by nested loops over the
    indexes, a lookup per request: 2.5x slower over 200k requests than hash joins."""
    window, plan = _read(
        history, lambda: history.window("m", n_features=2, start=T0 + timedelta(days=10))
    )
    assert "Hash" in plan and "Nested Loop" not in plan, plan
    _assert_holds(window, 10 * PER_DAY, DAYS * PER_DAY - 1)
