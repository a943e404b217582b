"""The purge's search for outputs whose request is gone uses the cut-off its deletes use.

A queued or running job's training window holds the purge's cut-off back
(``keep_job_windows``). The search used the full cut-off and the delete the held one:
with a batch's worth of such outputs between the two, it found them, deleted none, and
found them again, for ever, appending a ``purge_records_progress`` entry every ten
rounds."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import Connection, create_engine

from tests.tunewatch.store.record_helpers import output_record
from tunewatch.store import PurgeCounts, Store
from tunewatch.store._retention import PROGRESS_ACTION, PURGE_ACTION, purge_records

#: More than a purge batch (2,000): the search came back full every round.
ORPHANS = 2_500


def _orphans(store: Store, *, created_at: datetime) -> None:
    """``ORPHANS`` challenger outputs created at ``created_at`` whose request is gone."""
    store.write_records(
        [],
        [],
        [replace(output_record(f"gone-{i}", 2), created_at=created_at) for i in range(ORPHANS)],
    )


def _queued_job_holding(store: Store, start: datetime) -> int:
    """A job queued again after its worker died, its window recorded from ``start``."""
    job, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
    store.claim_job(job.id, "w1")
    store.record_job_window_start(job.id, start)
    requeued = store.requeue_crashed_job(store.get_job(job.id), error="killed", max_crashes=3)
    assert requeued is not None and requeued.status == "queued"
    return job.id


def _in_a_thread(run: Callable[[threading.Event], PurgeCounts]) -> tuple[bool, list[PurgeCounts]]:
    """Run ``run(stop)``; whether it returned by itself (within a generous limit: it
    takes well under a second), then stop it if not."""
    stop = threading.Event()
    out: list[PurgeCounts] = []
    thread = threading.Thread(target=lambda: out.append(run(stop)))
    thread.start()
    thread.join(60)
    finished = not thread.is_alive()
    stop.set()
    thread.join(120)
    return finished, out


def test_purge_held_back_by_a_queued_job_leaves_its_orphan_outputs_and_ends(
    model_store: Store,
) -> None:
    store = model_store
    now = store.database_now()
    job_id = _queued_job_holding(store, now - timedelta(days=2))
    _orphans(store, created_at=now - timedelta(days=1))
    before = now - timedelta(hours=12)

    finished, out = _in_a_thread(
        lambda stop: store.purge_records(before=before, keep_job_windows=True, stop=stop)
    )

    assert finished, "the purge was still running"
    assert out == [PurgeCounts()]
    assert not store.audit_log(action=PROGRESS_ACTION)
    [entry] = store.audit_log(action=PURGE_ACTION)
    assert "outcome" not in entry.details
    assert len(store.get_outputs("m", "gone-0")) == 1

    store.finish_job(job_id, status="failed", worker=None)
    counts = store.purge_records(before=before, keep_job_windows=True)

    assert counts == PurgeCounts(outputs=ORPHANS)
    assert store.get_outputs("m", "gone-0") == []


def test_a_purge_round_deleting_none_of_the_outputs_it_found_ends_the_search(
    model_store: Store, store_url: str
) -> None:
    """Should the search and the delete still disagree (a cut-off held back only for the
    delete, as a job recording its window between them would), the search is not
    repeated for the same outputs without end."""
    store = model_store
    now = store.database_now()
    _orphans(store, created_at=now - timedelta(days=1))
    engine = create_engine(store_url)
    reading: set[int] = set()

    @contextmanager
    def read() -> Iterator[Connection]:
        with engine.begin() as conn:
            reading.add(id(conn))
            try:
                yield conn
            finally:
                reading.discard(id(conn))

    def keep_from(conn: Connection) -> datetime | None:  # held back in the writes only
        return None if id(conn) in reading else now - timedelta(days=2)

    rounds: list[PurgeCounts] = []

    def proceed(stop: threading.Event) -> Callable[[PurgeCounts], bool]:
        def go_on(total: PurgeCounts) -> bool:
            rounds.append(total)
            return not stop.is_set()

        return go_on

    try:
        finished, out = _in_a_thread(
            lambda stop: purge_records(
                engine.begin,
                read,
                before=now - timedelta(hours=12),
                batch=2_000,
                keep_from=keep_from,
                proceed=proceed(stop),
            )
        )
    finally:
        engine.dispose()

    assert finished, f"the purge was still running after {len(rounds)} rounds"
    assert out == [PurgeCounts()]
    assert len(rounds) == 2  # the model's requests, then one search deleting nothing
