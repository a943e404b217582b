"""A store outage under the scheduler logs once, not a traceback at every tick: the
lease renewal (every ``lease_ttl_s / 3``) and each scheduled job that fails because
the database is unavailable log their first failure with the traceback, repeats at
debug, and one line when they work again. Other job failures keep their traceback
each time."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tunewatch._config import build_config
from tunewatch._errors import DatabaseUnavailableError
from tunewatch._scheduler import Scheduler, Task
from tunewatch.store import Store


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Outage:
    """The real call while ``down`` is false; the database being unavailable while it is
    true."""

    def __init__(self, call: object) -> None:
        self.down = True
        self._call = call

    def __call__(self, *args: object, **kwargs: object) -> object:
        if self.down:
            raise DatabaseUnavailableError("could not connect to the database")
        return self._call(*args, **kwargs)  # type: ignore[operator]


def _scheduler(tmp_path: Path, task: Task | None = None) -> tuple[Store, Scheduler, FakeClock]:
    config = build_config({"data_dir": str(tmp_path), "scheduler": {"lease_ttl_s": 30}}, env={})
    store = Store.open(config.store_url)
    clock = FakeClock()
    scheduler = Scheduler(
        store=store, config=config, jobs=[], tasks=[] if task is None else [task], clock=clock
    )
    return store, scheduler, clock


def _tracebacks(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if text in r.getMessage() and r.exc_info is not None and r.levelno >= logging.WARNING
    ]


def test_a_failing_lease_renewal_logs_one_traceback_per_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store, scheduler, clock = _scheduler(tmp_path)
    caplog.set_level(logging.DEBUG, logger="tunewatch._scheduler")
    try:
        scheduler._lead()
        assert scheduler.leader
        outage = Outage(store.acquire_lease)
        monkeypatch.setattr(store, "acquire_lease", outage)
        for _ in range(6):  # a minute of ticks; the lease runs out on the way
            clock.now += 10
            scheduler._lead()
        assert not scheduler.leader
        assert len(_tracebacks(caplog, "lease renewal failed")) == 1
        outage.down = False
        clock.now += 10
        scheduler._lead()
        assert scheduler.leader
        assert "lease renewal recovered after 6 failures" in caplog.text
    finally:
        store.release_lease("scheduler", scheduler.holder)
        store.close()


def test_a_scheduled_job_failing_for_an_unavailable_database_logs_one_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outage = Outage(lambda: None)
    store, scheduler, _ = _scheduler(tmp_path)
    caplog.set_level(logging.DEBUG, logger="tunewatch._scheduler")
    try:
        scheduler._lead()
        run = scheduler._guarded("launch_jobs", None, outage)
        for _ in range(5):
            run()
        assert len(_tracebacks(caplog, "scheduled launch_jobs of model=None failed")) == 1
        outage.down = False
        run()
        assert "scheduled launch_jobs of model=None recovered after 5 failures" in caplog.text
    finally:
        store.release_lease("scheduler", scheduler.holder)
        store.close()


def test_a_scheduled_job_failing_for_another_reason_logs_its_traceback_every_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise ValueError("a bug in the job")

    store, scheduler, _ = _scheduler(tmp_path)
    try:
        scheduler._lead()
        run = scheduler._guarded("evaluate", "a", broken)
        for _ in range(3):
            run()
        assert len(_tracebacks(caplog, "scheduled evaluate of model=a failed")) == 3
    finally:
        store.release_lease("scheduler", scheduler.holder)
        store.close()
