"""A worker stopped (SIGSTOP) inside a write to its job's row, a heartbeat or a progress
update, holds that row's lock: the launcher's requeue of stale jobs waited on it until its
lock timeout and failed the whole tick, before any worker was started. No other queued
job started, and the stale job was never queued again, for as long as the worker was
stopped (PostgreSQL).

The stopped worker is a second connection holding its uncommitted heartbeat; workers
are small Python processes standing in for ``tunewatch worker --job N``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url

from tunewatch._launcher import JobLauncher
from tunewatch.store import Store

pytestmark = pytest.mark.postgres

#: A worker that does nothing until a signal ends it.
IDLE_WORKER = [sys.executable, "-c", "import signal; signal.pause()"]
#: The launcher store's lock timeout: without the fix, each tick fails after it.
LOCK_TIMEOUT_S = 1.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    s = Store.open(pg_url, lock_timeout_s=LOCK_TIMEOUT_S)
    s.ensure_model(name="m", task="binary", feature_names=["a", "b"])
    s.ensure_model(name="n", task="binary", feature_names=["a", "b"])
    try:
        yield s
    finally:
        s.close()


@contextmanager
def _session(pg_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """Another session on the store's schema, in a transaction until it commits or rolls
    back (rolled back at the end of the block)."""
    url = make_url(pg_url)
    conn = psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        dbname=url.database,
        options=str(url.query["options"]),
    )
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()


@pytest.fixture
def launcher(store: Store, tmp_path: Path) -> Iterator[JobLauncher]:
    launcher = JobLauncher(
        store=store,
        config_path=tmp_path / "unused.yaml",
        workers=2,
        stale_after_s=60.0,
        command=IDLE_WORKER,
        clock=FakeClock(),
    )
    try:
        yield launcher
    finally:
        launcher.stop()


def _stale_running_job(store: Store, pg_url: str) -> int:
    """Job 1 of model ``m``, claimed by a worker on another host whose last heartbeat is an
    hour old."""
    job, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
    store.claim_job(job.id, "elsewhere:1")
    with _session(pg_url) as conn:
        conn.execute(
            "UPDATE jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = %s", (job.id,)
        )
        conn.commit()
    return job.id


def test_a_tick_starts_queued_jobs_while_a_stopped_worker_holds_a_stale_jobs_row(
    store: Store, launcher: JobLauncher, pg_url: str
) -> None:
    """The stale job whose row a stopped worker holds is left for a later tick; the queued
    job gets its worker now. Once the row is free (the server ends the stopped worker's
    idle transaction), the stale job is queued again."""
    stale = _stale_running_job(store, pg_url)
    queued, _ = store.create_job(model="n", kind="retune", trigger={}, spec={})
    with _session(pg_url) as worker:  # stopped inside its heartbeat, before the commit
        worker.execute("UPDATE jobs SET heartbeat_at = now() WHERE id = %s", (stale,))
        assert launcher.tick() == [queued.id]
        assert store.get_job(stale).status == "running"
        worker.rollback()  # its session ended: the heartbeat never committed
    assert launcher.tick() == []  # queued again, and started after the usual wait
    job = store.get_job(stale)
    assert (job.status, job.worker, job.crashes) == ("queued", None, 1)
    assert "stopped heartbeating" in (job.error or "")
    interrupted = store.list_events(model="m", type="retune_interrupted")
    assert [event.payload["job"] for event in interrupted] == [stale]


def test_a_failing_requeue_of_stale_jobs_still_starts_queued_jobs_and_logs_once(
    store: Store, launcher: JobLauncher, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever makes the requeue of stale jobs fail (here a lock on the whole table that
    its write needs and a plain read does not), the tick goes on and starts the workers of
    queued jobs; the failure is logged once while it lasts, and once it ends."""
    stale = _stale_running_job(store, pg_url)
    first, _ = store.create_job(model="n", kind="retune", trigger={}, spec={})
    second, _ = store.create_job(model="n", kind="retune", trigger={}, spec={})
    caplog.set_level(logging.DEBUG, logger="tunewatch._launcher")
    with _session(pg_url) as locker:
        locker.execute("LOCK TABLE jobs IN EXCLUSIVE MODE")
        assert launcher.tick() == [first.id, second.id]
        assert launcher.tick() == []  # both slots taken; the requeue fails again
        assert store.get_job(stale).status == "running"
    warnings = [
        r
        for r in caplog.records
        if r.name == "tunewatch._launcher"
        and r.levelno >= logging.WARNING
        and "stale" in r.getMessage()
    ]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].exc_info is not None
    assert launcher.tick() == []
    assert store.get_job(stale).status == "queued"
    assert any("recovered" in r.getMessage() for r in caplog.records), caplog.text
