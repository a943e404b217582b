"""A wall clock stepped back (NTP correcting a clock an hour fast) stops neither the lease's
renewals nor the scheduled runs.

The renewal was an APScheduler job, and APScheduler times its jobs by ``datetime.now()``:
stepped back an hour, it ran no renewal and no job for that hour. The lease lapsed in the
store while the process still said it led (and kept exporting the leader's figures); a
follower never tried to take the lease. Here APScheduler's clock is stepped back an hour
after ``start`` (as ``apscheduler.schedulers.base`` reads ``datetime.now``)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import apscheduler.schedulers.base as aps_base
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from monitor import ServingMetrics
from tunewatch._config import build_config
from tunewatch._scheduler import LEASE, Scheduler, Task, Wanted
from tunewatch._scheduler_jobs import _first_runs
from tunewatch._scheduler_renewal import Renewals
from tunewatch.store import Store
from tunewatch.store._schema import leases

#: How long the test waits for a renewal or a run (not a limit on anything measured).
WAIT_S = 30.0
STEP = timedelta(hours=-1)


class SteppedClock:
    """``datetime`` as APScheduler reads it (``apscheduler.schedulers.base.datetime``),
    ``offset`` from the real wall clock."""

    offset = timedelta(0)

    @classmethod
    def now(cls, tz: Any = None) -> datetime:
        return datetime.now(tz) + cls.offset


@pytest.fixture
def stepped(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[SteppedClock]]:
    class Stepped(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return SteppedClock.now(tz)

    SteppedClock.offset = timedelta(0)
    monkeypatch.setattr(aps_base, "datetime", Stepped)
    yield SteppedClock
    SteppedClock.offset = timedelta(0)


def _expires_at(store: Store) -> datetime:
    with store.engine.connect() as conn:
        expires: datetime = conn.execute(
            sa.select(leases.c.expires_at).where(leases.c.name == LEASE)
        ).scalar_one()
    return expires


def _counting(store: Store) -> queue.Queue[bool]:
    """Each lease renewal's answer, as it returns."""
    answers: queue.Queue[bool] = queue.Queue()
    real: Callable[..., bool] = store.acquire_lease

    def acquire(name: str, holder: str, *, ttl_s: float) -> bool:
        answer = real(name, holder, ttl_s=ttl_s)
        answers.put(answer)
        return answer

    store.acquire_lease = acquire  # type: ignore[method-assign]
    return answers


def _drain(q: queue.Queue[Any]) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return


def test_a_wall_clock_stepped_back_an_hour_stops_neither_the_renewals_nor_the_runs(
    tmp_path: Path, stepped: type[SteppedClock], caplog: pytest.LogCaptureFixture
) -> None:
    config = build_config({"data_dir": str(tmp_path), "scheduler": {"lease_ttl_s": 3}}, env={})
    store = Store.open(config.store_url)
    runs: queue.Queue[None] = queue.Queue()
    scheduler = Scheduler(
        store=store,
        config=config,
        jobs=[],
        tasks=[Task("tick", 1.0, lambda: runs.put(None))],
        metrics=ServingMetrics(registry=CollectorRegistry()),
    )
    renewals = _counting(store)
    scheduler.start()
    try:
        assert scheduler.leader
        runs.get(timeout=WAIT_S)  # the task runs before the step
        stepped.offset = STEP
        before = _expires_at(store)
        _drain(renewals)
        _drain(runs)
        for _ in range(2):  # the second one began after the step
            assert renewals.get(timeout=WAIT_S), "the lease was not renewed"
        assert _expires_at(store) > before
        assert scheduler.leader
        for _ in range(3):
            runs.get(timeout=WAIT_S)  # raises queue.Empty: no run since the step
    finally:
        scheduler.shutdown()
        store.close()
    steps = [
        r
        for r in caplog.records
        if r.name == "tunewatch._scheduler"
        and r.levelno == logging.WARNING
        and "stepped back" in r.getMessage()
    ]
    assert steps, "the step was not logged"


def test_a_stored_last_run_ahead_of_the_clock_delays_a_first_run_one_interval_at_most() -> None:
    """A last run recorded before the wall clock stepped back an hour (or by a replica
    whose clock runs an hour ahead) lies in the future: counted from it, the job's first
    run waited the hour as well as its interval."""
    now = datetime(2025, 1, 1, 12, tzinfo=UTC)
    want = Wanted(60.0, lambda: None, None, "evaluate", "default")
    due = now + timedelta(hours=1, seconds=60)  # an interval after a run an hour ahead
    firsts = _first_runs({"evaluate:a": (want, due)}, now)
    assert firsts == {"evaluate:a": now + timedelta(seconds=60)}


class JumpingWall:
    """A wall clock that follows the monotonic one, ``jump`` ahead from its ``at``-th
    reading on."""

    def __init__(self, jump: timedelta, at: int) -> None:
        self.jump, self.at, self.reads = jump, at, 0
        self._start = datetime.now(UTC)
        self._mono = time.monotonic()

    def __call__(self) -> datetime:
        self.reads += 1
        now = self._start + timedelta(seconds=time.monotonic() - self._mono)
        return now + self.jump if self.reads >= self.at else now


@pytest.mark.parametrize(
    "jump_s", [pytest.param(-3600, id="back"), pytest.param(600, id="forward")]
)
def test_the_renewals_tell_a_step_of_the_wall_clock_once(jump_s: int) -> None:
    renewed: queue.Queue[None] = queue.Queue()
    steps: list[float] = []
    renewals = Renewals(
        renew=lambda: renewed.put(None),
        interval_s=0.01,
        on_step=steps.append,
        wall=JumpingWall(timedelta(seconds=jump_s), at=3),
    )
    renewals.start()
    try:
        for _ in range(5):
            renewed.get(timeout=WAIT_S)
    finally:
        renewals.stop()
        renewals.join(WAIT_S)
    assert [round(s) for s in steps] == [jump_s]


def test_a_renewal_slower_than_the_time_between_renewals_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The renewal has a thread of its own: one hanging in the store holds the next back
    (it was an APScheduler job, skipped behind the one running); that the lease may run
    out meanwhile is logged, at most once in five minutes."""
    renewed: queue.Queue[None] = queue.Queue()
    slow = threading.Event()

    def renew() -> None:  # the first two renewals hang past the 10 ms between renewals
        if renewed.qsize() < 2:
            slow.wait(0.05)
        renewed.put(None)

    renewals = Renewals(renew=renew, interval_s=0.01, on_step=lambda step: None)
    with caplog.at_level(logging.WARNING, logger="tunewatch._scheduler"):
        renewals.start()
        try:
            for _ in range(4):
                renewed.get(timeout=WAIT_S)
        finally:
            renewals.stop()
            renewals.join(WAIT_S)
    [line] = [r.getMessage() for r in caplog.records]
    assert "more than the 0.0 s between renewals: the lease may run out" in line
