"""A store outage while the scheduler starts: the daemon starts, and the lease is not
left behind by a start that fails."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from tunewatch._config import build_config
from tunewatch._errors import StoreUnavailableError
from tunewatch._scheduler import PerModelJob, Scheduler, Task
from tunewatch.store import ModelRow, Store
from tunewatch.store._schema import leases


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ListingOutage:
    """The real store's ``list_models`` while the store is briefly unavailable: it raises
    :class:`StoreUnavailableError` while ``down``, and lists the models once it is back."""

    def __init__(self, store: Store) -> None:
        self.down = True
        self._list_models = store.list_models

    def __call__(self) -> list[ModelRow]:
        if self.down:
            raise StoreUnavailableError("the store is briefly unavailable")
        return self._list_models()


def _scheduler(
    tmp_path: Path, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> tuple[Store, Scheduler]:
    """A scheduler on a 30 s lease over one model `a`, with an evaluation job and a
    leader task; ``now`` is its wall clock."""
    config = build_config({"data_dir": str(tmp_path), "scheduler": {"lease_ttl_s": 30}}, env={})
    store = Store.open(config.store_url)
    store.ensure_model(name="a", task="binary", feature_names=["x"])
    scheduler = Scheduler(
        store=store,
        config=config,
        jobs=[PerModelJob("evaluate", lambda cfg: 60.0, lambda model: None)],
        tasks=[Task("launch_jobs", 5.0, lambda: None)],
        clock=FakeClock(),
        now=now,
    )
    return store, scheduler


def _lease_rows(store: Store) -> list[tuple[str, str]]:
    with store.engine.connect() as conn:
        return [(r.name, r.holder) for r in conn.execute(sa.select(leases))]


def test_a_store_outage_while_listing_models_at_start_does_not_stop_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The listing failed after the lease was taken, so ``start`` raised: uvicorn exited
    with "Application startup failed" and the lease stayed taken for its 30 s, with no
    process leading meanwhile."""
    store, scheduler = _scheduler(tmp_path)
    outage = ListingOutage(store)
    monkeypatch.setattr(store, "list_models", outage)
    try:
        scheduler.start()
        assert scheduler.leader
        assert scheduler.scheduled() == [
            "archive_studies",
            "expire_approvals",
            "launch_jobs",
            "leadership",
        ]
        assert "could not list the models" in caplog.text
        assert "the store is briefly unavailable" in caplog.text
        outage.down = False
        scheduler._lead()  # the next tick, the store back
        assert scheduler.scheduled() == [
            "archive_studies",
            "evaluate:a",
            "expire_approvals",  # pending approval requests expired, hourly
            "launch_jobs",
            "leadership",
        ]
    finally:
        scheduler.shutdown()
        store.close()


def test_a_store_outage_while_listing_models_keeps_the_scheduled_jobs_and_their_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A leader whose listing fails at a tick keeps every model's jobs, each due when it
    was, rather than raising out of the renewal."""
    store, scheduler = _scheduler(tmp_path)
    try:
        scheduler._lead()
        due = scheduler._aps.get_job("evaluate:a").next_run_time
        monkeypatch.setattr(store, "list_models", ListingOutage(store))
        scheduler._lead()
        assert scheduler.leader
        assert scheduler.scheduled() == [
            "archive_studies",
            "evaluate:a",
            "expire_approvals",
            "launch_jobs",
        ]
        assert scheduler._aps.get_job("evaluate:a").next_run_time == due
        assert "could not list the models" in caplog.text
    finally:
        store.release_lease("scheduler", scheduler.holder)
        store.close()


def test_a_start_that_fails_after_taking_the_lease_releases_it(tmp_path: Path) -> None:
    """``start`` raised with the lease taken, and the lease row stayed until it expired:
    no process led meanwhile, and the failed scheduler's renewals would have kept it."""

    def broken_now() -> datetime:  # a step after the lease is taken fails
        raise RuntimeError("the wall clock is broken")

    store, scheduler = _scheduler(tmp_path, now=broken_now)
    try:
        with pytest.raises(RuntimeError, match="the wall clock is broken"):
            scheduler.start()
        assert _lease_rows(store) == []
        assert not scheduler.leader
        scheduler._lead()  # a renewal tick firing after the failed start
        assert _lease_rows(store) == []
        assert store.acquire_lease("scheduler", "other", ttl_s=30)
        assert _lease_rows(store) == [("scheduler", "other")]
    finally:
        store.close()


def test_a_start_that_does_not_fail_keeps_its_lease(tmp_path: Path) -> None:
    """The release on a failed start leaves a started leader's lease alone."""
    # The wall clock is the real one: APScheduler counts its jobs' runs by it, and from a
    # fixed 2025 clock's first runs it walked every missed 5 s run up to now (50 s).
    store, scheduler = _scheduler(tmp_path)
    try:
        scheduler.start()
        assert _lease_rows(store) == [("scheduler", scheduler.holder)]
        assert not store.acquire_lease("scheduler", "other", ttl_s=30)
    finally:
        scheduler.shutdown()
        store.close()
