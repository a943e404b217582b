"""``tunewatch_scheduled_streak{model, outcome}``: a scheduled job's runs failed in a row
(``<job>_failed``, 0 after a run that succeeds), its runs skipped since it last finished a
run within its interval (``<job>_skipped``), and a model's evaluations in a row whose
reference snapshot could not be read (``reference_unreadable``).

``TunewatchScheduledJobFailing`` read only ``increase(...[1h]) >= 3``: a job failing
every run at an interval of 30 minutes or more can never fail three times an hour, and an
hourly evaluation whose reference could not be read (its drift alarm dropped to 0) raised
nothing, for ever. Real schedulers on a SQLite store, their runs started by APScheduler.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    JobEvent,
)
from prometheus_client import CollectorRegistry

from monitor import ServingMetrics
from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._scheduler import LEASE, PerModelJob, Scheduler
from tunewatch.store import Store

STREAK = "tunewatch_scheduled_streak"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Leader:
    """A leader over model ``a`` whose hourly ``evaluate`` job does what ``mode`` says
    (``ok``, ``fail`` or ``block``: runs until ``release`` is set)."""

    scheduler: Scheduler
    metrics: ServingMetrics
    store: Store
    mode: list[str]
    started: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    ended: queue.Queue[str] = field(default_factory=queue.Queue)
    skipped: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    def due(self, job_id: str = "evaluate:a") -> None:
        """Make ``job_id`` due now (APScheduler runs it, or skips it while it runs)."""
        self.scheduler._aps.get_job(job_id).modify(next_run_time=datetime.now(UTC))

    def run(self, mode: str, job_id: str = "evaluate:a") -> None:
        """One run of ``job_id`` in ``mode``, returned once it has ended (and been counted)."""
        self.mode[0] = mode
        self.due(job_id)
        assert self.ended.get(timeout=30) == job_id

    def skip(self) -> None:
        self.due()
        assert self.skipped.acquire(timeout=30), "evaluate:a was not skipped"

    def streak(self, outcome: str, model: str = "a") -> float | None:
        labels = {"model": model, "outcome": outcome}
        return self.metrics.registry.get_sample_value(STREAK, labels)


def _leader(store: Store, config_dir: Path, job: PerModelJob, metrics: ServingMetrics) -> Scheduler:
    raw = {
        "data_dir": str(config_dir),
        "scheduler": {"lease_ttl_s": 30},
        "tuning": {"archive_after_days": None},  # no archive to name
    }
    config = build_config(raw, env={})
    return Scheduler(store=store, config=config, jobs=[job], metrics=metrics, clock=FakeClock())


def _listen(running: Leader) -> None:
    """Tell the test when a run has ended (after the scheduler counted it) or was
    skipped."""

    def on_end(event: JobEvent) -> None:
        if event.job_id.startswith("evaluate:"):  # not the daemon-wide tasks' runs
            running.ended.put(event.job_id)

    def on_skip(event: JobEvent) -> None:  # after the scheduler's own listener
        running.skipped.release()

    running.scheduler._aps.add_listener(on_end, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    running.scheduler._aps.add_listener(on_skip, EVENT_JOB_MAX_INSTANCES)


@pytest.fixture
def leader(tmp_path: Path) -> Iterator[Leader]:
    config = build_config({"data_dir": str(tmp_path)}, env={})
    store = Store.open(config.store_url)
    store.ensure_model(name="a", task="binary", feature_names=["x"])
    mode = ["ok"]
    release = threading.Event()
    started = threading.Event()

    def evaluate(model: str) -> None:
        if mode[0] == "fail":
            raise RuntimeError(f"evaluation of {model} failed")
        if mode[0] == "block":
            started.set()
            release.wait(60)

    metrics = ServingMetrics(registry=CollectorRegistry())
    job = PerModelJob("evaluate", lambda cfg: 3600.0, evaluate)
    scheduler = _leader(store, tmp_path, job, metrics)
    running = Leader(scheduler, metrics, store, mode, started, release)
    _listen(running)
    scheduler.start()
    try:
        assert scheduler.leader
        yield running
    finally:
        release.set()
        scheduler.shutdown()
        store.close()


def test_a_job_s_failed_runs_in_a_row_are_exported_and_a_success_ends_the_streak(
    leader: Leader,
) -> None:
    assert leader.streak("evaluate_failed") == 0  # from when the job is scheduled
    for failed in (1, 2, 3):
        leader.run("fail")
        assert leader.streak("evaluate_failed") == failed
    leader.run("ok")
    assert leader.streak("evaluate_failed") == 0
    leader.run("fail")
    assert leader.streak("evaluate_failed") == 1
    counted = {"model": "a", "outcome": "evaluate_failed"}
    assert leader.metrics.registry.get_sample_value("tunewatch_evaluations_total", counted) == 4


def test_runs_skipped_behind_overrunning_runs_add_up_until_a_run_keeps_its_interval(
    leader: Leader,
) -> None:
    """An hourly job whose every run takes 70 minutes is skipped once an hour: a streak
    reset whenever a run started would never pass 1. It counts the skips since a run last
    ended with none due meanwhile."""
    assert leader.streak("evaluate_skipped") == 0
    for overrun in (1, 2, 3):
        leader.release.clear()
        leader.started.clear()
        leader.mode[0] = "block"
        leader.due()
        assert leader.started.wait(30)
        leader.skip()
        assert leader.streak("evaluate_skipped") == overrun
        leader.release.set()
        assert leader.ended.get(timeout=30) == "evaluate:a"
        assert leader.streak("evaluate_skipped") == overrun  # that run overran
    leader.run("fail")  # within its interval, failed or not
    assert leader.streak("evaluate_skipped") == 0
    assert leader.streak("evaluate_failed") == 1


def test_the_streaks_are_dropped_when_the_process_loses_the_lease(leader: Leader) -> None:
    """Only the leader runs the jobs: a streak left exported by a process that no longer
    leads would hold its alert (the rules take the max over replicas) for ever."""
    for _ in range(3):
        leader.run("fail")
    assert leader.streak("evaluate_failed") == 3
    leader.store.release_lease(LEASE, leader.scheduler.holder)
    assert leader.store.acquire_lease(LEASE, "another", ttl_s=600)
    leader.scheduler._lead()  # a renewal, as the lease's thread makes them
    assert not leader.scheduler.leader
    assert leader.streak("evaluate_failed") is None
    assert leader.streak("evaluate_skipped") is None


def _damage_reference(d: Daemon) -> tuple[Path, bytes]:
    champion = d.store.champion(MODEL)
    assert champion is not None
    path = d.artefacts.path(champion.details["reference_sha256"], ".npz")
    intact = path.read_bytes()
    path.write_bytes(intact[:100])
    return path, intact


def test_evaluations_whose_reference_cannot_be_read_are_a_streak_a_readable_one_ends(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The run itself succeeds (decay, labels and telemetry are evaluated and stored): the
    evaluator counts it ``reference_unreadable``, and the scheduler counts the streak."""
    daemon, _ = make_daemon(
        tmp_path, trained, extra={"tuning": {"workers": 0}, "scheduler": {"enabled": False}}
    )
    # the evaluator counts its outcomes in the daemon's metrics: the leader's too
    job = PerModelJob("evaluate", lambda cfg: 3600.0, daemon.evaluator.evaluate)
    scheduler = _leader(daemon.store, tmp_path / "leader", job, daemon.metrics)
    running = Leader(scheduler, daemon.metrics, daemon.store, ["ok"])
    _listen(running)
    path, intact = _damage_reference(daemon)
    scheduler.start()
    try:
        job = f"evaluate:{MODEL}"
        for unreadable in (1, 2, 3):
            running.run("ok", job_id=job)
            assert running.streak("reference_unreadable", MODEL) == unreadable
            assert running.streak("evaluate_failed", MODEL) == 0
        path.write_bytes(intact)
        running.run("ok", job_id=job)
        assert running.streak("reference_unreadable", MODEL) == 0
    finally:
        scheduler.shutdown()
        daemon.close()
