"""Retention: requests received before a cut-off go, with their outputs and labels."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.tunewatch.store.record_helpers import output_record, request_record
from tunewatch.store import LabelItem, PurgeCounts, Store


def _record(store: Store, rid: str, *, age: timedelta, label: bool = True) -> None:
    """Request ``rid`` received ``age`` ago (by the database's clock), with the champion's
    and a challenger's outputs of that time, and a label."""
    at = store.database_now() - age
    request = replace(request_record(rid), received_at=at)
    outputs = [replace(output_record(rid, v), created_at=at) for v in (1, 2)]
    store.write_records([request], outputs)
    if label:
        store.add_labels("m", [LabelItem(request_id=rid, value=1.0)])


def test_purge_deletes_requests_before_the_cut_off_with_their_outputs_and_labels(
    model_store: Store,
) -> None:
    store = model_store
    for i in range(10):
        _record(store, f"old-{i}", age=timedelta(days=40))
    for i in range(4):
        _record(store, f"new-{i}", age=timedelta(days=1))
    before = store.database_now() - timedelta(days=30)

    counts = store.purge_records(before=before, batch=3)

    assert counts == PurgeCounts(requests=10, outputs=20, labels=10)
    assert store.count_requests("m") == 4
    assert store.count_outputs("m") == 8
    assert store.request_ids("m") == {f"new-{i}" for i in range(4)}
    for i in range(10):
        assert store.get_request("m", f"old-{i}") is None
        assert store.get_outputs("m", f"old-{i}") == []
        assert store.get_label("m", f"old-{i}") is None
    for i in range(4):
        assert store.get_label("m", f"new-{i}") is not None
        assert len(store.get_outputs("m", f"new-{i}")) == 2


def test_purge_deletes_old_outputs_whose_request_is_gone_and_keeps_young_ones(
    model_store: Store,
) -> None:
    """Outputs have no foreign key to their request: a shadow output written for a request
    whose row never came stays unless the purge looks for it by its own time."""
    store = model_store
    now = store.database_now()
    old = replace(output_record("orphan-old", 2), created_at=now - timedelta(days=40))
    young = replace(output_record("orphan-new", 2), created_at=now - timedelta(days=1))
    store.write_records([], [], [old, young])

    counts = store.purge_records(before=now - timedelta(days=30), batch=3)

    assert counts == PurgeCounts(requests=0, outputs=1, labels=0)
    assert store.get_outputs("m", "orphan-old") == []
    assert len(store.get_outputs("m", "orphan-new")) == 1


def test_purge_is_audited_once_per_run_with_its_cut_off_and_counts(model_store: Store) -> None:
    store = model_store
    for i in range(5):
        _record(store, f"old-{i}", age=timedelta(days=40), label=i % 2 == 0)
    before = store.database_now() - timedelta(days=30)

    store.purge_records(before=before, batch=2)

    (entry,) = store.audit_log(action="purge_records")
    assert entry.actor == "scheduler"
    assert entry.details == {
        "before": before.isoformat(),
        "counts": {"requests": 5, "outputs": 10, "labels": 3},
    }
    assert store.verify_audit() is None


def test_purge_with_nothing_old_deletes_nothing(model_store: Store) -> None:
    store = model_store
    _record(store, "new", age=timedelta(hours=1))

    counts = store.purge_records(before=store.database_now() - timedelta(days=1))

    assert counts == PurgeCounts(requests=0, outputs=0, labels=0)
    assert store.request_ids("m") == {"new"}


@pytest.mark.postgres
def test_feedback_written_while_a_purge_batch_runs_is_refused_per_item_and_does_not_fail_the_purge(
    pg_url: str,
) -> None:
    """PostgreSQL: the batch read its requests without locking them, so a label committed
    between its label and request deletes broke the requests' foreign key and failed the
    whole run (every model, nothing audited, retried a day later). The batch now locks
    its requests: the label waits for the purge and is refused as for a purged request.

    The feedback read its requests without locking them too, so its label insert then
    failed the foreign key once the purge committed, and the whole feedback (a live
    request's label with it) was refused as a conflict. It now locks the requests it
    reads: the purged one is ``unknown_request``, the live one's label is stored.

    Interleaved by locks, not by time: another transaction holds one of the batch's
    outputs, so the purge stops between its label and output deletes; the label is sent
    then, and the output released once the database shows the label waiting or done."""
    store = Store.open(f"{pg_url}&application_name={_SESSIONS}")
    try:
        store.ensure_model(name="m", task="binary", feature_names=["a", "b"])
        _record(store, "old-0", age=timedelta(days=40), label=False)
        _record(store, "old-1", age=timedelta(days=40), label=False)
        _record(store, "live-1", age=timedelta(hours=1), label=False)
        before = store.database_now() - timedelta(days=30)
        holder = store.engine.connect()
        holder.begin()
        holder.execute(
            sa.text("SELECT 1 FROM outputs WHERE request_id = 'old-1' AND version = 2 FOR UPDATE")
        )
        outcome: dict[str, object] = {}

        def purge() -> None:
            try:
                outcome["purge"] = store.purge_records(before=before)
            except Exception as exc:  # the outcome under test
                outcome["purge"] = exc

        def label() -> None:
            items = [
                LabelItem(request_id="old-0", value=1.0),
                LabelItem(request_id="live-1", value=1.0),
            ]
            try:
                outcome["label"] = store.add_labels("m", items)
            except Exception as exc:  # the outcome under test
                outcome["label"] = exc

        purging = threading.Thread(target=purge)
        purging.start()
        _wait_for(store, lambda waiting: waiting >= 1)  # the purge waits for the output
        labelling = threading.Thread(target=label)
        labelling.start()
        # the label waits for the purge's locked request, or (unlocked) committed already
        _wait_for(store, lambda waiting: waiting >= 2 or "label" in outcome)
        holder.rollback()
        holder.close()
        purging.join(30)
        labelling.join(30)
        assert outcome["purge"] == PurgeCounts(requests=2, outputs=4, labels=0), outcome
        assert outcome["label"] == ["unknown_request", "created"], outcome
        assert store.request_ids("m") == {"live-1"}
        assert store.get_label("m", "old-0") is None
        live = store.get_label("m", "live-1")
        assert live is not None
        assert live.value == 1.0
    finally:
        store.close()


#: this test's store's sessions: other tests' (other xdist workers', in other schemas of the
#: database) lock waits are no step of this one
_SESSIONS = f"tw_retention_{uuid.uuid4().hex[:12]}"


def _wait_for(store: Store, done: Callable[[int], bool]) -> None:
    """Until ``done(number of sessions waiting for a lock)`` holds, polling the
    database's own view of its sessions (at most 30 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with store.engine.connect() as conn:
            waiting = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND application_name = :app"
                ),
                {"app": _SESSIONS},
            ).scalar_one()
        if done(int(waiting)):
            return
        time.sleep(0.02)
    raise AssertionError("the sessions never reached the expected locks")
