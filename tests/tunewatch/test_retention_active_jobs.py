"""The retention purge keeps the training window of every queued or running job.

A job's window is the newest ``window_rows`` labelled requests before it was queued, and
every worker that resumes or joins the job reads it again: a purge in between deleted its
oldest rows, the window read again was another dataset, and the study refused it ("it
was tuned on dataset sha256:…, this worker has …"), failing the job. The first worker to
build a job's window records its earliest request time in the job's spec
(``window_start``), and the leader's purge task deletes nothing received from the
earliest such time of the queued and running jobs on, until they end."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from retune.cv import dataset_version
from tests.tunewatch.conftest import MODEL
from tests.tunewatch.store.record_helpers import output_record, request_record
from tests.tunewatch.test_tuning import _config, _daemon
from tunewatch._example import ExampleModel
from tunewatch._retention_task import purge_task
from tunewatch._tuning import TuningJobRunner
from tunewatch.store import LabelItem, PurgeCounts, Store


@pytest.fixture
def store(m_store: Store) -> Store:
    return m_store


def _record(store: Store, rid: str, at: datetime) -> None:
    store.write_records([replace(request_record(rid), received_at=at)], [output_record(rid)])
    store.add_labels("m", [LabelItem(request_id=rid, value=1.0)])


def _running_job(store: Store, window_start: datetime) -> int:
    job, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
    store.claim_job(job.id, "w1")
    store.update_job_progress(job.id, {}, spec={"window_start": window_start.isoformat()})
    return job.id


def test_a_running_job_keeps_its_window_through_a_purge_until_it_ends(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    now = store.database_now()
    start = now - timedelta(days=40)
    for i in range(5):  # the job's window's oldest rows, past the retention
        _record(store, f"window-{i}", start + timedelta(minutes=i))
    _record(store, "before-window", start - timedelta(minutes=1))
    _record(store, "recent", now - timedelta(days=1))
    job_id = _running_job(store, start)
    purge = purge_task(store, retention_days=30)

    with caplog.at_level(logging.INFO, logger="tunewatch._retention_task"):
        purge.run()

    assert store.request_ids("m") == {f"window-{i}" for i in range(5)} | {"recent"}
    assert f"job {job_id}" in caplog.text and "window" in caplog.text
    [entry] = store.audit_log(action="purge_records")
    assert datetime.fromisoformat(entry.details["before"]) == start

    store.finish_job(job_id, status="succeeded", worker="w1")
    purge.run()

    assert store.request_ids("m") == {"recent"}


def test_a_job_recording_its_window_start_while_a_purge_runs_keeps_its_window(
    store: Store,
) -> None:
    """The purge task read the held start once, before its first batch: a worker
    recording its job's start while the purge ran (purges last minutes at scale) lost
    the window. Each batch reads it again in its own transaction."""
    now = store.database_now()
    start = now - timedelta(days=35)
    for i in range(4):
        _record(store, f"before-window-{i}", start - timedelta(hours=4 - i))
    for i in range(5):
        _record(store, f"window-{i}", start + timedelta(minutes=i))
    job, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
    store.claim_job(job.id, "w1")

    def committed(total: PurgeCounts) -> None:
        if total.requests == 2:  # the worker records its start after the first batch
            store.record_job_window_start(job.id, start)

    store.purge_records(
        before=now - timedelta(days=30), batch=2, keep_job_windows=True, committed=committed
    )

    assert store.request_ids("m") == {f"window-{i}" for i in range(5)}


def test_a_queued_again_job_keeps_its_window_and_the_earliest_window_holds(
    store: Store,
) -> None:
    """An interrupted job is queued again with its spec: its window still holds. Of two
    jobs, the earlier window start caps the purge."""
    now = store.database_now()
    older, newer = now - timedelta(days=50), now - timedelta(days=40)
    _record(store, "older", older)
    _record(store, "newer", newer)
    _record(store, "gone", older - timedelta(hours=1))
    interrupted = _running_job(store, older)
    assert store.requeue_job(interrupted, "w1")
    _running_job(store, newer)

    purge_task(store, retention_days=30).run()

    assert store.request_ids("m") == {"older", "newer"}


def test_without_active_jobs_the_purge_keeps_its_cut_off(store: Store) -> None:
    now = store.database_now()
    _record(store, "old", now - timedelta(days=40))
    job_id = _running_job(store, now - timedelta(days=40))
    store.cancel_job(job_id, actor="alice", reason="done with it")

    purge_task(store, retention_days=30).run()

    assert store.request_ids("m") == set()


def test_a_job_s_window_read_again_after_the_purge_is_the_same_dataset(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The worker records the window's start; a purge whose cut-off falls inside the
    window leaves it whole, and a resuming worker trains on the same dataset."""
    d = _daemon(_config(tmp_path), trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert outcome.job_id is not None
        runner = TuningJobRunner(
            store=d.store, registry=d.registry, artefacts=d.artefacts, config=d.config, worker="w"
        )
        job = d.store.claim_job(outcome.job_id, "w")
        model = d.store.get_model(MODEL)
        cfg = d.config.model_or_default(MODEL, model.task)
        x, y, _ = runner._training_window(model, cfg, job)
        window = d.store.window(MODEL, n_features=len(model.feature_names))
        first = datetime.fromisoformat(d.store.get_job(job.id).spec["window_start"])
        assert first.timestamp() == window.received_at.min()
        n = d.store.count_requests(MODEL)
        # a cut-off 100 s after the window's first request
        age = d.store.database_now() - (first + timedelta(seconds=100))
        purge_task(d.store, retention_days=age / timedelta(days=1)).run()

        assert d.store.count_requests(MODEL) == n
        job = d.store.claim_job(job.id, "w")  # resumed
        x2, y2, _ = runner._training_window(model, cfg, job)
        assert dataset_version(x2, y2) == dataset_version(x, y)
        assert d.store.get_job(job.id).spec["window_start"] == first.isoformat()

        d.store.finish_job(job.id, status="failed", error="test", worker="w")
        purge_task(d.store, retention_days=age / timedelta(days=1)).run()
        # the cut-off is at least 100 s after the window's start (the task reads the
        # database's clock again): the rows before it are gone
        assert d.store.count_requests(MODEL) <= n - 100
        kept = d.store.window(MODEL, n_features=len(model.feature_names))
        assert kept.received_at.min() >= (first + timedelta(seconds=100)).timestamp()
    finally:
        d.close()
