"""The queries evaluation and the guardrails run every few minutes are served by an
index, not a scan.

``Store.latencies`` reads one model's outputs since a window's start, and
``Store.last_action`` one model's newest action event of some types: without an index
each walked every output (or event) the model ever had (1.9 s at a million outputs).
Latencies are read per version through an index that holds the version: on one without
it, a sparse challenger's newest latencies walked every champion latency in between
(288 ms at a million champion latencies, 25 ms with it). A model's newest evaluations
of any kind (the dashboard overview, ``GET /v1/models/{m}/evaluations``) and a test's
latest look (each comparison tick) are read in order from an index, not sorted from
every evaluation, or found by walking back through every later look of other tests
(400k evaluations: 720 ms on SQLite; 400k later looks: 78 ms). The plans are read from
the database itself for the statements the store sends.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from tunewatch.store import OutputRecord, RequestRecord, Store
from tunewatch.store._comparisons import ComparisonStore, ComparisonTestRow
from tunewatch.store._schema import labels


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


def _plans(store: Store, call: Callable[[], object], table: str) -> list[str]:
    """The plan of every statement ``call`` sends that reads ``table``."""
    with _captured(store) as statements:
        call()
    plans = []
    with store.engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        cursor = raw.cursor()
        for statement, params in statements:
            if f"FROM {table}" not in statement:
                continue
            if store.engine.dialect.name == "sqlite":
                cursor.execute(f"EXPLAIN QUERY PLAN {statement}", params)
                plans.append(" ".join(str(row[-1]) for row in cursor.fetchall()))
            else:
                cursor.execute("SET enable_seqscan = off")  # the tables are tiny here
                cursor.execute(f"EXPLAIN {statement}", params)
                plans.append(" ".join(str(row[0]) for row in cursor.fetchall()))
    return plans


def _plan(store: Store, call: Callable[[], object], table: str) -> str:
    [plan] = _plans(store, call, table)
    return plan


def _by_version(plan: str) -> bool:
    """Whether ``plan`` reads outputs through the index on (model, version, created_at),
    seeking the version (not filtering the model's rows by it)."""
    if "ix_outputs_model_version_created_at" not in plan:
        return False
    sought = r"Index Cond: \(\(\(model\)::text = '[^']*'::text\) AND \(version = "
    return "(model=? AND version=?" in plan or re.search(sought, plan) is not None


def _seeks_in_order(plan: str, table: str, index: str) -> bool:
    """Whether ``plan`` reads ``table`` by seeking ``index`` and returns its rows in the
    index's order: no sort (SQLite's temp B-tree, PostgreSQL's Sort) and no scan."""
    if "TEMP B-TREE" in plan or "Sort" in plan:
        return False
    return f"SEARCH {table} USING INDEX {index} (" in plan or (
        f"using {index} on {table}" in plan and "Index Cond:" in plan
    )


def _versions(store: Store, n: int) -> None:
    for i in range(n):
        store.add_version(
            model="m", artefact_sha256=f"{i:064x}", hyperparameters={}, size_bytes=1, actor="a"
        )


def _outputs(store: Store, version: int, n: int) -> None:
    start = datetime(2026, 1, 2, tzinfo=UTC)
    store.write_records(
        [],
        [
            OutputRecord(
                model="m",
                request_id=f"v{version}-{i}",
                version=version,
                role="champion",
                latency_s=0.001,
                n_rows=1,
                n_cols=1,
                values=b"x" * 4,
                created_at=start + timedelta(seconds=i),
            )
            for i in range(n)
        ],
    )


def test_latencies_since_a_time_are_read_per_version_through_the_version_index(
    model_store: Store,
) -> None:
    """Without versions named, the model's registered versions are read one by one."""
    _versions(model_store, 2)
    since = datetime(2026, 1, 1, tzinfo=UTC)
    plans = _plans(model_store, lambda: model_store.latencies("m", since=since), "outputs")
    assert len(plans) == 2 and all(_by_version(p) for p in plans), plans
    named = _plans(
        model_store, lambda: model_store.latencies("m", since=since, versions=[1]), "outputs"
    )
    assert len(named) == 1 and _by_version(named[0]), named


def test_the_last_action_uses_the_events_type_index(model_store: Store) -> None:
    plan = _plan(
        model_store,
        lambda: model_store.last_action("m", trigger="drift_detected", outcomes=["taken"]),
        "events",
    )
    # PostgreSQL may seek the action types in the (type, id) index instead, reading their
    # newest first and filtering the model: action events are few, either way a seek
    assert "ix_events_model_type_id" in plan or "ix_events_type_id" in plan, plan


def test_a_type_of_no_model_is_found_through_the_type_index(model_store: Store) -> None:
    """A misspelt ``GET /v1/events?type=`` asks whether any event of the type is stored:
    without an index leading with the type that read walked every event."""
    plans = _plans(model_store, lambda: model_store.event_type_stored("drift_detcted"), "events")
    assert plans and all("ix_events_type_id" in plan for plan in plans), plans


def test_the_events_of_a_type_across_models_are_read_newest_first_from_the_type_index(
    model_store: Store,
) -> None:
    plan = _plan(
        model_store, lambda: model_store.list_events(type="drift_detected", limit=50), "events"
    )
    assert "ix_events_type_id" in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort Key" not in plan, plan  # read in order


def test_the_newest_latencies_of_a_version_seek_the_version_in_its_index(
    model_store: Store,
) -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    plan = _plan(
        model_store,
        lambda: model_store.latencies("m", since=since, versions=[1], newest=10_000),
        "outputs",
    )
    assert _by_version(plan), plan


def test_the_guardrails_aligned_latencies_seek_each_version_in_its_index(
    model_store: Store,
) -> None:
    _outputs(model_store, 1, 10)
    _outputs(model_store, 2, 3)
    since = datetime(2026, 1, 1, tzinfo=UTC)
    plans = _plans(
        model_store,
        lambda: model_store.latencies(
            "m", since=since, versions=[1, 2], newest=10_000, aligned_to=2
        ),
        "outputs",
    )
    assert len(plans) == 2 and all(_by_version(p) for p in plans), plans
    assert "SCAN outputs" not in plans[1] and "Seq Scan" not in plans[1], plans[1]


def test_the_newest_evaluations_of_any_kind_are_read_in_order_from_an_index(
    model_store: Store,
) -> None:
    """Newest first, ties on ``window_end`` broken by id: both from the index."""
    plan = _plan(model_store, lambda: model_store.list_evaluations("m", limit=50), "evaluations")
    assert _seeks_in_order(plan, "evaluations", "ix_evaluations_model_window_end_id"), plan


def _paired_test(store: Store) -> tuple[ComparisonStore, ComparisonTestRow]:
    """A paired test of v2 against v1 of model ``m`` (both registered here)."""
    _versions(store, 2)
    comparisons = ComparisonStore(store)
    test, _ = comparisons.get_or_create_test(
        model="m",
        kind="paired",
        champion_version=1,
        challenger_version=2,
        correction="holm",
        state={},
    )
    return comparisons, test


def test_a_tests_latest_look_seeks_the_test_in_an_index(model_store: Store) -> None:
    """Not by walking back through every look of other tests since the test's last."""
    comparisons, test = _paired_test(model_store)
    plan = _plan(model_store, lambda: comparisons.latest_look(test.id), "comparison_looks")
    assert _seeks_in_order(plan, "comparison_looks", "ix_comparison_looks_test_id_id"), plan


def _labelled_history(store: Store, n: int, start: datetime, step: timedelta) -> None:
    """``n`` requests v1 answered and v2 shadowed, each labelled a minute later, one per
    ``step`` from ``start``; the tables' statistics gathered, as a long history's are."""
    outs = []
    for i in range(n):
        for version, role in ((1, "champion"), (2, "challenger")):
            outs.append(
                OutputRecord("m", f"r{i}", version, role, 0.001, 1, 1, b"x" * 4, start + step * i)
            )
    store.write_records(
        [RequestRecord("m", f"r{i}", start + step * i, "infer", 1, 1, b"x" * 4) for i in range(n)],
        outs,
    )
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(labels),
            [
                {
                    "model": "m",
                    "request_id": f"r{i}",
                    "value": 1.0,
                    "outcome": None,
                    "received_at": start + step * i + timedelta(minutes=1),
                }
                for i in range(n)
            ],
        )
    with store.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")


def test_a_comparison_read_from_its_watermark_seeks_the_labels_index(model_store: Store) -> None:
    """Not every request since the test began (a range scan of the requests' time index,
    or of the whole table: 30 million rows per challenger per tick for a test open 30
    days at a million requests a day): the labels from the watermark on, each one's
    request and outputs by key."""
    comparisons, test = _paired_test(model_store)
    since = datetime(2026, 1, 1, tzinfo=UTC)
    _labelled_history(model_store, 3000, since, timedelta(minutes=20))  # about 42 days
    plan = _plan(
        model_store,
        lambda: comparisons.read_labelled(
            model="m",
            answered_by=1,
            paired_with=2,
            received_from=since,
            unconsumed_by=test.id,
            limit=50_000,
            order_from=since + timedelta(days=41),
        ),
        "requests",
    )
    if model_store.dialect == "sqlite":
        seek = "SEARCH labels USING INDEX ix_labels_model_received_at (model=? AND received_at>?)"
        by_key = (
            "SEARCH requests USING INDEX sqlite_autoindex_requests_1 (model=? AND request_id=?)"
        )
        assert seek in plan and by_key in plan, plan
    else:
        assert "Index Scan on ix_labels_model_received_at" in plan or (
            "Index Scan using ix_labels_model_received_at on labels" in plan
        ), plan
        by_key = (
            r"Index Scan using pk_requests on requests\s+\(cost=[^)]*\)\s+Index Cond: "
            r"\(\(\(model\)::text = 'm'::text\) AND "
            # the label's request or the champion's answer to it: one value
            r"\(\(request_id\)::text = \((labels|answer)\.request_id\)"
        )
        assert re.search(by_key, plan) is not None, plan
    assert "ix_requests_model_received_at" not in plan, plan
    assert "SCAN requests" not in plan and "Seq Scan on requests" not in plan, plan
