"""A job queued again (its worker stopped, or presumed dead) says so in its progress: it
went back to the queue still saying ``phase: tuning``, which ``/v1/jobs`` and
``tunewatch jobs`` showed beside ``status: queued`` until a worker resumed it."""

from __future__ import annotations

from tunewatch.store import Store


def _tuning(store: Store, worker: str) -> int:
    job, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
    store.claim_job(job.id, worker)
    store.update_job_progress(job.id, {"phase": "tuning", "trials": 7})
    return job.id


def test_a_job_its_stopped_worker_queues_again_says_queued(model_store: Store) -> None:
    job_id = _tuning(model_store, "host:1")
    assert model_store.requeue_job(job_id, "host:1")
    job = model_store.get_job(job_id)
    assert job.status == "queued"
    assert job.progress == {"phase": "queued", "trials": 7}  # what it did is kept


def test_a_job_whose_worker_died_queued_again_says_queued(model_store: Store) -> None:
    job_id = _tuning(model_store, "host:1")
    job = model_store.requeue_crashed_job(
        model_store.get_job(job_id), error="killed", max_crashes=3
    )
    assert job is not None and job.status == "queued"
    assert job.progress == {"phase": "queued", "trials": 7}


def test_a_job_not_queued_again_keeps_its_progress(model_store: Store) -> None:
    job_id = _tuning(model_store, "host:1")
    assert not model_store.requeue_job(job_id, "host:2")  # another worker's claim
    assert model_store.get_job(job_id).progress == {"phase": "tuning", "trials": 7}
