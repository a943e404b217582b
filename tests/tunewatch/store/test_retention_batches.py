"""The purge's batches: on SQLite other writers take the write lock between them, and
a purge stopped or killed between them leaves what it deleted audited."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from tests.tunewatch.store.record_helpers import output_record, request_record
from tunewatch.store import PurgeCounts, Store


def _old_requests(store: Store, n: int, *, age: timedelta) -> None:
    at = store.database_now() - age
    for start in range(0, n, 5000):
        ids = [f"old-{i}" for i in range(start, min(n, start + 5000))]
        store.write_records(
            [replace(request_record(rid), received_at=at) for rid in ids],
            [replace(output_record(rid), created_at=at) for rid in ids],
        )


def test_a_writer_waiting_on_sqlite_s_lock_gets_in_between_every_purge_batches(
    tmp_path: Path,
) -> None:
    """Each batch took the write lock again as soon as the last one committed, and the
    recorder's group commit, polling the lock, almost never found it free: scoring
    stalled for 30 s and got 503s, the leader lost its lease. Now a writer waiting while
    a batch runs writes before the next one."""
    store = Store.open(f"sqlite:///{tmp_path}/tunewatch.db")
    try:
        store.ensure_model(name="m", task="binary", feature_names=["a", "b"])
        _old_requests(store, 40_000, age=timedelta(days=40))
        written = 0
        done = threading.Event()

        def write() -> None:  # the recorder: always a write waiting for the lock
            nonlocal written
            while not done.is_set():
                store.write_records([request_record(f"new-{written}")], [])
                written += 1

        at_commit: list[int] = []
        writer = threading.Thread(target=write)
        writer.start()
        try:
            counts = store.purge_records(
                before=store.database_now() - timedelta(days=30),
                committed=lambda _: at_commit.append(written),
            )
        finally:
            done.set()
            writer.join()

        assert counts.requests == 40_000
        boundaries = len(at_commit) - 1
        let_in = sum(b > a for a, b in zip(at_commit, at_commit[1:], strict=False))
        assert boundaries >= 19
        assert let_in >= boundaries - 2, f"the writer got in at {let_in} of {boundaries}"
    finally:
        store.close()


def test_a_purge_stopped_between_batches_is_audited_with_what_it_deleted(
    model_store: Store,
) -> None:
    store = model_store
    _old_requests(store, 10, age=timedelta(days=40))
    before = store.database_now() - timedelta(days=30)
    stop = threading.Event()

    def committed(total: PurgeCounts) -> None:
        if total.requests == 4:  # the daemon's shutdown, after the second batch
            stop.set()

    counts = store.purge_records(before=before, batch=2, stop=stop, committed=committed)

    assert counts == PurgeCounts(requests=4, outputs=4, labels=0)
    assert store.count_requests("m") == 6
    (entry,) = store.audit_log(action="purge_records")
    assert entry.details == {
        "before": before.isoformat(),
        "counts": {"requests": 4, "outputs": 4, "labels": 0},
        "outcome": "stopped",
    }
    assert store.verify_audit() is None


def test_a_long_purge_audits_its_progress_in_the_batches_own_transactions(
    model_store: Store,
) -> None:
    """A purge killed part-way (kill -9) left every row it deleted unaudited: every few
    batches, the counts so far are audited with the batch's deletes."""
    store = model_store
    _old_requests(store, 25, age=timedelta(days=40))
    before = store.database_now() - timedelta(days=30)
    progress: list[int] = []

    def committed(total: PurgeCounts) -> None:
        entries = store.audit_log(action="purge_records_progress")
        progress.append(len(entries))
        if entries:  # the newest entry is never behind by more than ten batches
            assert total.requests - entries[0].details["counts"]["requests"] < 10

    store.purge_records(before=before, batch=1, committed=committed)

    assert progress[8] == 0 and progress[9] == 1 and progress[19] == 2
    latest = store.audit_log(1, action="purge_records_progress")[0]
    assert latest.details == {
        "before": before.isoformat(),
        "counts": {"requests": 20, "outputs": 20, "labels": 0},
    }
