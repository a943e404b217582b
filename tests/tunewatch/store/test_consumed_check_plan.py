"""On PostgreSQL a comparison read leaves out a test's consumed requests by a key lookup per
request, whatever the statistics say about the test.

A test created after the last ANALYZE is estimated to have consumed one request (and the
table only grows, so autovacuum rarely analyses it again). Written as ``NOT EXISTS``, the
check was planned as a nested-loop anti-join over a ``Materialize`` of all the test's
consumed rows, each candidate request compared with each consumed one: at 1.7M requests a
look's read took 148-151 s instead of 4-12 s, on every look from a new test's second. The
plans are read from the database itself, for the statement the store sends, both for a
test analysed with its consumed rows and for one analysed before it consumed any; the
rows the read returns are checked against what was written. (Analysed, the test's rows
were hashed for an anti-join instead: linear, but a build of every row the test consumed
for a read of a few hundred fresh ones.) The stale plan appears at this small scale with
the default planner settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from tunewatch.store import Store
from tunewatch.store._comparisons import ComparisonStore, LabelledBatch

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 1, 1, tzinfo=UTC)
N = 6000  # requests, each answered by versions 1 and 2 and labelled a minute later
OLD = 2000  # requests an earlier test of the pair consumed
CONSUMED = 3000  # requests the test under read consumed
LIMIT = 500


def _seed(store: Store) -> None:
    """``N`` requests of model ``m``, written set-based (the read is under test): request
    ``i`` at ``T0 + i`` seconds, answered by the champion (1) and the challenger (2) with
    ``(0.4, 0.6)`` and labelled ``i % 2`` a minute later."""
    store.ensure_model(name="m", task="binary", feature_names=["a", "b"])
    series = "generate_series(0, :n - 1) AS i"
    at = ":t0 + make_interval(secs => i)"
    rid = "'q' || lpad(i::text, 6, '0')"
    params = {"n": N, "t0": T0}
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO requests (model, request_id, received_at, source, n_rows, n_cols,"
                f" inputs) SELECT 'm', {rid}, {at}, 'infer', 1, 2,"
                f" int4send(i) || int4send(i) FROM {series}"
            ),
            params,
        )
        conn.execute(
            sa.text(
                "INSERT INTO outputs (model, request_id, version, role, latency_s, n_rows,"
                f" n_cols, \"values\", created_at) SELECT 'm', {rid}, v.version, v.role, 0.001,"
                " 1, 2, float4send(0.4::float4) || float4send(0.6::float4),"
                f" {at} FROM {series}"
                " CROSS JOIN (VALUES (1, 'champion'), (2, 'challenger')) AS v (version, role)"
            ),
            params,
        )
        conn.execute(
            sa.text(
                "INSERT INTO labels (model, request_id, value, received_at)"
                f" SELECT 'm', {rid}, to_json((i % 2)::float8), {at} + interval '1 minute'"
                f" FROM {series}"
            ),
            params,
        )


def _analyse(store: Store) -> None:
    """Statistics, as autovacuum keeps them."""
    with store.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "ANALYZE requests, outputs, labels, comparison_tests, comparison_consumed"
        )


def _consumed_test(store: Store, *, analysed: bool) -> int:
    """A paired test of versions 1 and 2 that consumed the first ``CONSUMED`` requests,
    after a DeLong test of the pair consumed the first ``OLD``. ``analysed``: ANALYZE
    after the test consumed them; otherwise before it was created, as autovacuum leaves a
    test created since its last run."""
    comparisons = ComparisonStore(store)
    old, _ = comparisons.get_or_create_test(
        model="m",
        kind="delong",
        champion_version=1,
        challenger_version=2,
        correction=None,
        state={},
    )
    comparisons.consume_unscored(old, [f"q{i:06d}" for i in range(OLD)])
    comparisons.finish_test(old.id, status="closed")
    if not analysed:
        _analyse(store)
    test, _ = comparisons.get_or_create_test(
        model="m",
        kind="paired",
        champion_version=1,
        challenger_version=2,
        correction="holm",
        state={},
    )
    comparisons.consume_unscored(test, [f"q{i:06d}" for i in range(CONSUMED)])
    if analysed:
        _analyse(store)
    return test.id


@pytest.fixture
def history(pg_url: str) -> Iterator[Store]:
    store = Store.open(pg_url)
    try:
        _seed(store)
        yield store
    finally:
        store.close()


@contextmanager
def _consumed_plans(store: Store) -> Iterator[list[dict[str, Any]]]:
    """The plans of the statements on consumed rows sent meanwhile: explained on the
    read's own connection, in its transaction, just before it runs."""
    plans: list[dict[str, Any]] = []

    def before(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        if "comparison_consumed" not in statement:
            return
        explained = cursor.connection.execute(f"EXPLAIN (FORMAT JSON) {statement}", params)
        plans.append(explained.fetchone()[0][0]["Plan"])

    sa.event.listen(store.engine, "before_cursor_execute", before)
    try:
        yield plans
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", before)


def _consumed_scans(
    node: dict[str, Any], above: tuple[dict[str, Any], ...] = ()
) -> Iterator[tuple[dict[str, Any], tuple[dict[str, Any], ...]]]:
    """Each scan of ``comparison_consumed`` in a plan, with the nodes above it."""
    if node.get("Relation Name") == "comparison_consumed":
        yield node, above
    for child in node.get("Plans", ()):
        yield from _consumed_scans(child, (*above, node))


_JOINS = ("Nested Loop", "Hash Join", "Merge Join")


def _assert_looked_up_per_request(plan: dict[str, Any]) -> None:
    """Every scan of the consumed rows is a lookup of the request's rows: not the
    test's rows materialised (or hashed) for a join to compare each request with."""
    scans = list(_consumed_scans(plan))
    assert scans, "comparison_consumed is not in the plan"
    for scan, above in scans:
        seen = (
            f"{scan['Node Type']} on comparison_consumed ({scan.get('Index Cond')}) under "
            + " < ".join(f"{n['Node Type']} ({n.get('Join Filter', '')})" for n in above)
        )
        assert scan["Node Type"] in ("Index Scan", "Index Only Scan"), seen
        # by the primary key, or by the request's index with the test as a filter: a
        # request is consumed by a few tests at most
        assert "request_id" in scan["Index Cond"], seen
        # the nodes from the scan up to the subplan or join it answers
        node, rest = scan, list(above)
        while rest and node.get("Parent Relationship") not in ("SubPlan", "InitPlan"):
            node = rest.pop()
            if node["Node Type"] in _JOINS:
                break
            assert node["Node Type"] not in ("Materialize", "Hash"), seen
        assert not any("comparison_consumed" in n.get("Join Filter", "") for n in above), seen


Read = Callable[[ComparisonStore, int], LabelledBatch]

# the comparison loop's reads of a test's fresh pairs: ordered by request receipt (labels
# matured) and by label arrival
READS: dict[str, Read] = {
    "matured": lambda c, test: c.read_labelled(
        model="m",
        answered_by=1,
        paired_with=2,
        unconsumed_by=test,
        limit=LIMIT,
        matured_before=T0 + timedelta(days=1),
        received_from=T0,
        order_from=T0,
    ),
    "label_order": lambda c, test: c.read_labelled(
        model="m",
        answered_by=1,
        paired_with=2,
        unconsumed_by=test,
        limit=LIMIT,
        received_from=T0,
        order_from=T0,
    ),
}


@pytest.mark.parametrize("analysed", [False, True], ids=["test_not_analysed", "test_analysed"])
@pytest.mark.parametrize("read", list(READS))
def test_a_tests_consumed_requests_are_left_out_by_a_key_lookup_per_request(
    history: Store, read: str, analysed: bool
) -> None:
    test = _consumed_test(history, analysed=analysed)
    with _consumed_plans(history) as plans:
        batch = READS[read](ComparisonStore(history), test)
    [plan] = plans
    _assert_looked_up_per_request(plan)
    assert batch.request_ids == tuple(f"q{i:06d}" for i in range(CONSUMED, CONSUMED + LIMIT))
