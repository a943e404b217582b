"""Retention keeps the requests an open ROC AUC (group-sequential DeLong) test consumed:
each of its looks replays the earlier ones from them, and with them purged the test
could never look again (or looked on fewer rows than it recorded). Once the test is
decided or closed, they go at the next purge; no other test holds any."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

import pytest

from tests.tunewatch.store.record_helpers import output_record, request_record
from tunewatch.store import LabelItem, PurgeCounts, Store
from tunewatch.store._comparisons import ComparisonStore, ComparisonTestRow, LookValues

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
