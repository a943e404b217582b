"""A scheduled run that comes due while the job's previous run is still going is skipped
(``max_instances=1``): it is counted under its model and job, and logged by name, at most
once per job in ``SKIP_LOG_EVERY_S`` with the count.

APScheduler logged each skip as ``Execution of job "Scheduler._guarded.<locals>.run ..."
skipped``, naming neither model nor job, at every tick of an overrunning job, and nothing
counted them: in a 40-model daemon a heavy model's evaluation ran 4 times to the others'
12, with 11 anonymous warnings and ``evaluate_failed 0`` on /metrics.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobEvent
from prometheus_client import CollectorRegistry

from monitor import ServingMetrics
from tunewatch._config import build_config
from tunewatch._scheduler import SKIP_LOG_EVERY_S, PerModelJob, Scheduler, Task
from tunewatch.store import Store


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Overrunning:
    """A leader over models ``a`` and ``b`` whose job ``job_id`` is running until
    ``release`` is set; ``skip()`` makes that job due again and returns once APScheduler
    has skipped the run (and the scheduler has counted it)."""

    scheduler: Scheduler
    metrics: ServingMetrics
    clock: FakeClock
    job_id: str
    skipped: threading.Semaphore

    def skip(self) -> None:
        self.scheduler._aps.get_job(self.job_id).modify(next_run_time=datetime.now(UTC))
        assert self.skipped.acquire(timeout=30), f"{self.job_id} was not skipped"

    def count(self, model: str, outcome: str) -> float | None:
        labels = {"model": model, "outcome": outcome}
        return self.metrics.registry.get_sample_value("tunewatch_evaluations_total", labels)


@contextmanager
def overrunning(tmp_path: Path, job_id: str) -> Iterator[Overrunning]:
    config = build_config({"data_dir": str(tmp_path), "scheduler": {"lease_ttl_s": 30}}, env={})
    store = Store.open(config.store_url)
    for model in ("a", "b"):
        store.ensure_model(name=model, task="binary", feature_names=["x"])
    started, release, skipped = threading.Event(), threading.Event(), threading.Semaphore(0)

    def slow(model: str | None = None) -> None:
        started.set()
        release.wait(60)

    metrics = ServingMetrics(registry=CollectorRegistry())
    clock = FakeClock()
    scheduler = Scheduler(
        store=store,
        config=config,
        jobs=[PerModelJob("evaluate", lambda cfg: 3600.0, slow)],
        tasks=[Task("launch_jobs", 3600.0, slow)],
        metrics=metrics,
        clock=clock,
    )

    def on_skip(event: JobEvent) -> None:  # after the scheduler's own listener
        if event.job_id == job_id:
            skipped.release()

    scheduler._aps.add_listener(on_skip, EVENT_JOB_MAX_INSTANCES)
    scheduler.start()
    try:
        assert scheduler.leader
        scheduler._aps.get_job(job_id).modify(next_run_time=datetime.now(UTC))
        assert started.wait(30)
        yield Overrunning(scheduler, metrics, clock, job_id, skipped)
    finally:
        release.set()
        scheduler.shutdown()
        store.close()


def _skip_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]


def test_a_run_skipped_behind_its_previous_run_is_counted_under_its_model_and_job(
    tmp_path: Path,
) -> None:
    with overrunning(tmp_path, "evaluate:a") as run:
        # exported at 0 from when the job was scheduled: increase() counts the first skip
        assert run.count("a", "evaluate_skipped") == 0
        assert run.count("b", "evaluate_skipped") == 0
        assert run.count("-", "launch_jobs_skipped") == 0
        run.skip()
        run.skip()
        assert run.count("a", "evaluate_skipped") == 2
        assert run.count("b", "evaluate_skipped") == 0
        assert run.count("a", "evaluate_failed") == 0


def test_a_task_s_skipped_run_is_counted_under_model_dash(tmp_path: Path) -> None:
    with overrunning(tmp_path, "launch_jobs") as run:
        run.skip()
        assert run.count("-", "launch_jobs_skipped") == 1
        assert run.count("a", "evaluate_skipped") == 0


def test_a_skipped_run_is_logged_naming_its_model_and_job_not_by_apscheduler(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with overrunning(tmp_path, "evaluate:a") as run:
        run.skip()
    (line,) = _skip_lines(caplog)
    assert "scheduled evaluate of model=a skipped" in line
    assert "still running" in line
    assert not [
        r
        for r in caplog.records
        if r.name.startswith("apscheduler")
        and "maximum number of running instances" in r.getMessage()
    ]


def test_skips_of_one_job_are_logged_at_most_once_per_interval_with_the_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """APScheduler logged every skip: 0.5 lines a second per job while the database froze
    under running evaluations."""
    with overrunning(tmp_path, "evaluate:a") as run:
        for _ in range(4):
            run.skip()
        assert len(_skip_lines(caplog)) == 1
        run.clock.now += SKIP_LOG_EVERY_S
        run.skip()
        assert run.count("a", "evaluate_skipped") == 5
    first, second = _skip_lines(caplog)
    assert "model=a" in first and "model=a" in second
    assert "3 more since the last one logged" in second


def test_every_scheduled_job_is_named_after_what_it_runs_and_for_which_model(
    tmp_path: Path,
) -> None:
    """APScheduler names a job after its function: every job was
    ``Scheduler._guarded.<locals>.run`` in its lines."""
    with overrunning(tmp_path, "evaluate:a") as run:
        jobs = run.scheduler._aps.get_jobs()
        assert {job.id for job in jobs} == {
            "archive_studies",
            "count_events",
            "evaluate:a",
            "evaluate:b",
            "expire_approvals",
            "export_tuning",
            "launch_jobs",
        }
        for job in jobs:
            assert job.name == job.id
