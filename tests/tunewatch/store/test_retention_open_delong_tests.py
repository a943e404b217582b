"""Retention keeps the requests an open ROC AUC (group-sequential DeLong) test consumed:
each of its looks replays the earlier ones from them, and with them purged the test
could never look again (or looked on fewer rows than it recorded). Once the test is
decided or closed, they go at the next purge; no other test holds any. The rows that say
which requests a test consumed go with the requests purged."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.tunewatch.store.record_helpers import output_record, request_record
from tunewatch.store import LabelItem, PurgeCounts, Store
from tunewatch.store._comparisons import ComparisonStore, ComparisonTestRow, LookValues
from tunewatch.store._schema import comparison_consumed

AGE = timedelta(days=40)
RETENTION = timedelta(days=30)


def _record(store: Store, rid: str) -> None:
    """Request ``rid`` of model ``m``, received ``AGE`` ago, with two versions' outputs
    and a label."""
    at = store.database_now() - AGE
    store.write_records(
        [replace(request_record(rid), received_at=at)],
        [replace(output_record(rid, v), created_at=at) for v in (1, 2)],
    )
    store.add_labels("m", [LabelItem(request_id=rid, value=1.0)])


def _consumed(
    comparisons: ComparisonStore, model: str, kind: str, challenger: int, ids: list[str]
) -> ComparisonTestRow:
    """A test of ``kind`` of ``challenger`` against v1 whose one look consumed ``ids``."""
    test, _ = comparisons.get_or_create_test(
        model=model,
        kind=kind,  # type: ignore[arg-type]
        champion_version=1,
        challenger_version=challenger,
        correction="bonferroni",
        state={},
    )
    look = LookValues(
        method="group_sequential_delong",
        n=len(ids),
        estimate=0.0,
        ci_low=None,
        ci_high=None,
        p_value=1.0,
        adjusted_p_value=1.0,
        decision="continue",
    )
    return comparisons.record_look(test, consumed=ids, look=look, state={}, status="open")


def test_purge_keeps_the_requests_an_open_delong_test_consumed_until_it_ends(
    model_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    store = model_store
    store.ensure_model(name="other", task="binary", feature_names=["a", "b"])
    comparisons = ComparisonStore(store)
    held = ["d1", "d2", "d3"]
    for rid in [*held, "p1", "p2", "c1", "x1", "o1"]:
        _record(store, rid)
    delong = _consumed(comparisons, "m", "delong", 2, held)
    _consumed(comparisons, "m", "paired", 2, ["p1", "p2"])  # its sums are in its state
    ended = _consumed(comparisons, "m", "delong", 3, ["c1"])
    comparisons.finish_test(ended.id, status="decided", decision="challenger_worse")
    _consumed(comparisons, "other", "delong", 2, ["o1"])  # another model's request o1
    before = store.database_now() - RETENTION

    with caplog.at_level(logging.INFO, logger="tunewatch.store._retention"):
        counts = store.purge_records(before=before, batch=2)

    assert counts == PurgeCounts(requests=5, outputs=10, labels=5)
    assert store.request_ids("m") == set(held)
    for rid in held:
        assert store.get_label("m", rid) is not None
        assert len(store.get_outputs("m", rid)) == 2
    [kept] = [r for r in caplog.records if "keeps 3 requests" in r.getMessage()]
    assert "model=m" in kept.getMessage() and "DeLong" in kept.getMessage()

    comparisons.finish_test(delong.id, status="closed", outcome={"reason": "spent"})
    assert store.purge_records(before=before) == PurgeCounts(requests=3, outputs=6, labels=3)
    assert store.request_ids("m") == set()


def _consumed_rows(store: Store) -> set[tuple[int, str]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(comparison_consumed.c.test_id, comparison_consumed.c.request_id))
        return {(int(test_id), str(rid)) for test_id, rid in rows}


def test_purge_deletes_the_consumed_rows_of_the_requests_it_purges(model_store: Store) -> None:
    """A consumed row names its test's request: once the request is purged it can never be
    read again, and the row went on holding space for ever (a row per request per test).
    The rows of the requests an open DeLong test keeps stay, a paired test's among them;
    so do another model's rows of the same request ids."""
    store = model_store
    store.ensure_model(name="other", task="binary", feature_names=["a", "b"])
    comparisons = ComparisonStore(store)
    for rid in ["d1", "p1", "p2", "p3"]:
        _record(store, rid)
    delong = _consumed(comparisons, "m", "delong", 2, ["d1"])
    paired = _consumed(comparisons, "m", "paired", 2, ["d1", "p1", "p2"])
    closed = _consumed(comparisons, "m", "paired", 3, ["p2", "p3"])
    comparisons.finish_test(closed.id, status="closed", outcome={"reason": "spent"})
    elsewhere = _consumed(comparisons, "other", "paired", 2, ["p1", "p3"])

    counts = store.purge_records(before=store.database_now() - RETENTION, batch=2)

    assert counts == PurgeCounts(requests=3, outputs=6, labels=3)
    assert store.request_ids("m") == {"d1"}
    assert _consumed_rows(store) == {
        (delong.id, "d1"),
        (paired.id, "d1"),
        (elsewhere.id, "p1"),
        (elsewhere.id, "p3"),
    }

    comparisons.finish_test(delong.id, status="closed", outcome={"reason": "spent"})
    store.purge_records(before=store.database_now() - RETENTION)
    assert _consumed_rows(store) == {(elsewhere.id, "p1"), (elsewhere.id, "p3")}
