"""Workers joining a running job: the job stays its live worker's (contract suite)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from tunewatch._errors import ConflictError
from tunewatch.store import Store
from tunewatch.store._schema import jobs

ALIVE = timedelta(minutes=1)


def test_a_worker_joining_a_live_job_leaves_it_to_the_worker_running_it(
    model_store: Store,
) -> None:
    """A worker joining a running job took it over: its failure (refused by the study)
    then failed the job its first worker was still tuning, and that worker's death was
    no longer the job's (it was left failed rather than queued again)."""
    job, _ = model_store.create_job(model="m", kind="retune", trigger={}, spec={})
    owner = model_store.claim_job(job.id, "host:1", alive_within=ALIVE)
    assert (owner.status, owner.worker) == ("running", "host:1")
    joined = model_store.claim_job(job.id, "host:2", alive_within=ALIVE)
    assert (joined.status, joined.worker) == ("running", "host:1")
    assert joined.heartbeat_at is not None and owner.heartbeat_at is not None
    assert joined.heartbeat_at >= owner.heartbeat_at  # the joiner is alive too
    with pytest.raises(ConflictError) as info:
        model_store.finish_job(job.id, status="failed", error="refused", worker="host:2")
    assert info.value.code == "job_claimed"
    assert (model_store.get_job(job.id).status, model_store.get_job(job.id).error) == (
        "running",
        None,
    )
    again = model_store.requeue_crashed_job(owner, error="host:1 killed", max_crashes=3)
    assert again is not None and (again.status, again.crashes) == ("queued", 1)


def test_a_worker_joining_a_job_silent_past_the_limit_takes_it_over(model_store: Store) -> None:
    """A job whose heartbeat is older than ``alive_within`` is presumed to have lost its
    worker: the one joining it now holds it (its failure fails it, its death requeues it)."""
    job, _ = model_store.create_job(model="m", kind="retune", trigger={}, spec={})
    model_store.claim_job(job.id, "host:1", alive_within=ALIVE)
    with model_store.engine.begin() as conn:
        silent = datetime.now(UTC) - timedelta(minutes=10)
        conn.execute(update(jobs).where(jobs.c.id == job.id).values(heartbeat_at=silent))
    taken = model_store.claim_job(job.id, "host:2", alive_within=ALIVE)
    assert (taken.status, taken.worker) == ("running", "host:2")
    failed = model_store.finish_job(job.id, status="failed", error="refused", worker="host:2")
    assert (failed.status, failed.error) == ("failed", "refused")


def test_a_worker_claiming_again_a_job_it_holds_keeps_it(model_store: Store) -> None:
    job, _ = model_store.create_job(model="m", kind="retune", trigger={}, spec={})
    model_store.claim_job(job.id, "host:1", alive_within=ALIVE)
    again = model_store.claim_job(job.id, "host:1", alive_within=ALIVE)
    assert (again.status, again.worker) == ("running", "host:1")
