"""Standing re-tuning schedules: fixed job ids, coalesced misses, cron or interval."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobEvent

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._config import ModelConfig, build_config
from tunewatch._cron import crontab_trigger
from tunewatch._errors import ConfigError
from tunewatch._example import ExampleModel
from tunewatch._scheduler import STOP_GRACE_S, PerModelJob, Scheduler, Task
from tunewatch.store import Store


def test_cron_schedule_gets_a_fixed_coalescing_job_that_queues_a_retune(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    daemon, _ = make_daemon(
        tmp_path,
        trained,
        extra={
            "tuning": {"workers": 0},
            "models": [{"name": MODEL, "task": "binary", "tuning": {"schedule_cron": "0 3 * * 0"}}],
        },
    )
    daemon.start()
    try:
        assert daemon.scheduler.leader
        assert "retune_schedule:credit" in daemon.scheduler.scheduled()
        job = daemon.scheduler._aps.get_job("retune_schedule:credit")
        assert job is not None and job.coalesce and job.max_instances == 1
        assert "cron" in str(job.trigger) and "hour='3'" in str(job.trigger)
        daemon.scheduler._lead()  # a later leadership tick keeps the same id, adds nothing
        assert daemon.scheduler.scheduled().count("retune_schedule:credit") == 1
        job.func()  # the schedule fires
        (queued,) = daemon.store.list_jobs(model=MODEL)
        assert queued.trigger["event"] == "schedule"
    finally:
        daemon.close()


def test_models_without_a_schedule_get_no_retune_job(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    daemon, _ = make_daemon(tmp_path, trained, extra={"tuning": {"workers": 0}})
    daemon.start()
    try:
        # launch_jobs runs with no local workers too: it fails jobs whose remote worker died.
        # export_tuning exports the running jobs' progress on /metrics; count_events
        # counts the events every process stored (tunewatch_events_total and notices).
        assert daemon.scheduler.scheduled() == [
            "archive_studies",  # the leader moves old studies to the archive, daily
            "compare:credit",
            "count_events",
            "evaluate:credit",
            "expire_approvals",  # pending approval requests expired, hourly
            "export_tuning",
            "launch_jobs",
            "leadership",
        ]
    finally:
        daemon.close()


WEDNESDAY = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "fires"),
    [
        # APScheduler 3's from_crontab counts days of the week from Monday = 0, so crontab's
        # Sunday ("0", the documented example) fired on Mondays and "7" was refused
        ("0 3 * * 0", ["2025-01-05 03:00", "2025-01-12 03:00"]),
        ("0 3 * * 7", ["2025-01-05 03:00", "2025-01-12 03:00"]),
        ("0 3 * * sun", ["2025-01-05 03:00", "2025-01-12 03:00"]),
        ("30 1 * * 1-5", ["2025-01-01 01:30", "2025-01-02 01:30", "2025-01-03 01:30"]),
        ("0 0 * * 5-7", ["2025-01-03 00:00", "2025-01-04 00:00", "2025-01-05 00:00"]),
        ("0 0 * * mon-sun/3", ["2025-01-02 00:00", "2025-01-05 00:00", "2025-01-06 00:00"]),
        ("*/20 * * * *", ["2025-01-01 00:00", "2025-01-01 00:20", "2025-01-01 00:40"]),
        # both day fields restricted: either matches (crontab), not both (APScheduler)
        ("0 0 1 * 1", ["2025-01-01 00:00", "2025-01-06 00:00", "2025-01-13 00:00"]),
        ("0 0 1,15 * sun", ["2025-01-01 00:00", "2025-01-05 00:00", "2025-01-12 00:00"]),
        # a field starting with "*" counts as unrestricted, a step too: both must match
        # (they were OR-ed: "*/2" fired on every odd day and every Monday)
        ("0 0 */2 * 1", ["2025-01-13 00:00", "2025-01-27 00:00", "2025-02-03 00:00"]),
        ("0 0 1 * */2", ["2025-02-01 00:00", "2025-03-01 00:00", "2025-04-01 00:00"]),
    ],
)
def test_cron_expressions_fire_as_crontab_reads_them(expr: str, fires: list[str]) -> None:
    trigger = crontab_trigger(expr)
    got, previous, now = [], None, WEDNESDAY
    for _ in fires:
        nxt = trigger.get_next_fire_time(previous, now)
        assert nxt is not None
        got.append(f"{nxt:%Y-%m-%d %H:%M}")
        previous, now = nxt, nxt + timedelta(seconds=1)
    assert got == fires


@pytest.mark.parametrize(
    ("expr", "rule"),
    [
        ("0 3 * * 8", "day of the week"),
        ("0 3 * *", "5 fields"),
        ("0 25 * * *", "hour"),
        ("0 3 * * ²", "day of the week"),
        ("0 3 * * 5-2", "day of the week"),
    ],
)
def test_a_bad_cron_expression_is_a_config_error_naming_its_key(expr: str, rule: str) -> None:
    """It used to be parsed only when the scheduler started, by APScheduler, whose error
    named no key and stopped the daemon (or, at a later leadership tick, every job after
    it)."""
    with pytest.raises(ConfigError, match=f"models.0.tuning.schedule_cron.*{rule}"):
        build_config(
            {"models": [{"name": MODEL, "task": "binary", "tuning": {"schedule_cron": expr}}]},
            env={},
        )


@pytest.mark.parametrize(
    "expr", ["0 3 30 2 *", "0 0 31 4,6,9,11 *", "0 0 30-31 2 *", "59 23 31 2,4 */2"]
)
def test_a_cron_expression_that_never_fires_is_a_config_error(expr: str) -> None:
    """It loaded, and APScheduler added the job paused (no next run time): the model was
    never retuned on schedule, and nothing said so."""
    with pytest.raises(
        ConfigError, match=r"models\.0\.tuning\.schedule_cron: .*never fires.*day of the month"
    ):
        build_config(
            {"models": [{"name": MODEL, "task": "binary", "tuning": {"schedule_cron": expr}}]},
            env={},
        )


@pytest.mark.parametrize("expr", ["0 0 29 2 *", "0 0 29 2 */7", "0 0 31 2 1", "0 0 31 */2 *"])
def test_a_cron_expression_that_fires_rarely_loads(expr: str) -> None:
    """February 29th (on a Sunday: once in 28 years at most), or a Monday of February."""
    assert crontab_trigger(expr).get_next_fire_time(None, WEDNESDAY) is not None
    build_config(
        {"models": [{"name": MODEL, "task": "binary", "tuning": {"schedule_cron": expr}}]},
        env={},
    )


def test_a_cron_schedule_and_an_interval_schedule_are_a_config_error() -> None:
    """`schedule_hours` beside `schedule_cron` was silently ignored."""
    tuning = {"schedule_cron": "0 3 * * 0", "schedule_hours": 1}
    with pytest.raises(
        ConfigError, match=r"models\.0\.tuning: .*either `schedule_cron` or `schedule_hours`"
    ):
        build_config({"models": [{"name": MODEL, "task": "binary", "tuning": tuning}]}, env={})


def test_a_model_named_with_a_space_gets_its_jobs_and_does_not_stop_the_others(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """One registered model whose name the config's stricter pattern refused made the
    leader schedule nothing, for any model, and the daemon fail to start."""
    daemon, _ = make_daemon(tmp_path, trained, extra={"tuning": {"workers": 0}})
    champion = trained[0]
    daemon.registry.register("fraud model", champion.onnx, champion.metadata, actor="test")
    daemon.start()
    try:
        assert daemon.scheduler.leader
        assert {"evaluate:credit", "evaluate:fraud model", "launch_jobs"} <= set(
            daemon.scheduler.scheduled()
        )
    finally:
        daemon.close()


def test_a_model_whose_jobs_cannot_be_built_does_not_stop_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = build_config({"data_dir": str(tmp_path)}, env={})
    store = Store.open(config.store_url)
    for name in ("a", "b", "c"):
        store.ensure_model(name=name, task="binary", feature_names=["x"])

    def when(cfg: ModelConfig) -> float:
        if cfg.name == "b":
            raise RuntimeError("no schedule for b")
        return 60.0

    scheduler = Scheduler(
        store=store, config=config, jobs=[PerModelJob("evaluate", when, lambda model: None)]
    )
    try:
        scheduler._lead()
        assert scheduler.leader
        assert scheduler.scheduled() == [
            "archive_studies",
            "evaluate:a",
            "evaluate:c",
            "expire_approvals",
        ]
        assert "model=b" in caplog.text and "no schedule for b" in caplog.text
    finally:
        store.release_lease("scheduler", scheduler.holder)
        store.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _leasing(tmp_path: Path) -> tuple[Store, Scheduler, list[str], FakeClock]:
    """A scheduler on a 30 s lease over one model `a`, its evaluations recorded in
    ``runs``, on a clock the test moves."""
    config = build_config({"data_dir": str(tmp_path), "scheduler": {"lease_ttl_s": 30}}, env={})
    store = Store.open(config.store_url)
    store.ensure_model(name="a", task="binary", feature_names=["x"])
    runs: list[str] = []
    clock = FakeClock()
    scheduler = Scheduler(
        store=store,
        config=config,
        jobs=[PerModelJob("evaluate", lambda cfg: 60.0, runs.append)],
        clock=clock,
    )
    return store, scheduler, runs, clock


def test_a_job_is_skipped_once_the_lease_this_process_renewed_has_expired(
    tmp_path: Path,
) -> None:
    """A leader whose renewal could not run (its pool was busy) kept starting jobs while
    another replica had taken the expired lease: two leaders."""
    store, scheduler, runs, clock = _leasing(tmp_path)
    try:
        scheduler._lead()
        job = scheduler._aps.get_job("evaluate:a")
        job.func()
        clock.now += 29.0  # renewed 29 s ago: still ours
        job.func()
        clock.now += 2.0  # 31 s: the lease may belong to another process by now
        job.func()
        assert runs == ["a", "a"]
        scheduler._lead()  # renewed
        job.func()
        assert runs == ["a", "a", "a"]
    finally:
        store.release_lease("scheduler", scheduler.holder)
        store.close()


def test_a_failed_renewal_keeps_the_schedule_while_the_lease_lasts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A renewal that raised (a dropped connection, a short outage) made the leader drop
    every job, though the lease was still its own; the next renewal took it back and
    added the jobs anew, counted from then: six 2.5 s outages on a 15 s evaluation
    interval lost five evaluations in a row."""
    store, scheduler, runs, clock = _leasing(tmp_path)
    acquire = store.acquire_lease

    def down(*args: object, **kwargs: object) -> bool:
        raise ConnectionError("the store is down")

    try:
        scheduler._lead()
        before = scheduler._aps.get_job("evaluate:a")
        first_run = before.next_run_time
        clock.now += 10.0
        monkeypatch.setattr(store, "acquire_lease", down)
        scheduler._lead()  # failed, 10 s into a 30 s lease
        job = scheduler._aps.get_job("evaluate:a")
        assert scheduler.leader and job is not None and job.next_run_time == first_run
        job.func()
        assert runs == ["a"]  # still ours: the job runs
        clock.now += 25.0  # 35 s since the last renewal: the lease may be another's
        scheduler._lead()
        assert not scheduler.leader and scheduler._aps.get_job("evaluate:a") is None
        monkeypatch.setattr(store, "acquire_lease", acquire)
        scheduler._lead()
        assert scheduler.leader and scheduler._aps.get_job("evaluate:a") is not None
    finally:
        store.release_lease("scheduler", scheduler.holder)
        store.close()


def test_the_lease_is_renewed_while_every_job_thread_is_busy(tmp_path: Path) -> None:
    """The renewal shared the jobs' thread pool: ten long jobs held every thread and the
    lease expired under a leader that went on starting jobs. It has a thread of its own."""
    config = build_config({"data_dir": str(tmp_path), "scheduler": {"lease_ttl_s": 3}}, env={})
    store = Store.open(config.store_url)
    scheduler = Scheduler(store=store, config=config, jobs=[])
    started, release, renewed = threading.Semaphore(0), threading.Event(), threading.Event()
    acquire = store.acquire_lease

    def busy() -> None:
        started.release()
        release.wait(60)

    def counted(*args: Any, **kwargs: Any) -> bool:
        taken: bool = acquire(*args, **kwargs)
        if busy_now.is_set():
            renewed.set()
        return taken

    busy_now = threading.Event()
    store.acquire_lease = counted  # type: ignore[method-assign]
    scheduler.start()
    try:
        assert scheduler.leader
        for i in range(10):  # APScheduler's default pool has 10 threads
            scheduler._aps.add_job(busy, id=f"busy{i}")
        for _ in range(10):
            assert started.acquire(timeout=30)
        busy_now.set()
        assert renewed.wait(30), "the lease renewal waited for a job thread"
        assert scheduler.leader
    finally:
        release.set()
        scheduler.shutdown()
        store.close()


def test_an_interval_schedule_counts_from_its_last_run_not_from_when_it_was_added(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The interval restarted whenever the leader added the job (a restart, a failover, a
    failed renewal), so a daemon restarted more often than schedule_hours never ran it."""
    daemon, _ = make_daemon(
        tmp_path,
        trained,
        extra={
            "tuning": {"workers": 0},
            "models": [{"name": MODEL, "task": "binary", "tuning": {"schedule_hours": 24}}],
        },
    )
    daemon.start()
    try:
        job = daemon.scheduler._aps.get_job("retune_schedule:credit")
        registered = daemon.store.get_model(MODEL).created_at
        # never ran: from when the leader first saw the schedule, at its first tick
        (seen,) = daemon.store.list_events(model=MODEL, type="schedule_started")
        assert registered <= seen.created_at
        assert job.next_run_time == seen.created_at + timedelta(hours=24)
        job.func()
        (ran,) = daemon.store.list_events(model=MODEL, type="schedule")
        job.remove()  # as a failed renewal or a restart does
        daemon.scheduler._lead()
        job = daemon.scheduler._aps.get_job("retune_schedule:credit")
        assert job.next_run_time == ran.created_at + timedelta(hours=24)
    finally:
        daemon.close()


@pytest.mark.parametrize("when", [3600.0, "0 * * * *"], ids=["interval", "cron"])
def test_a_schedule_missed_while_no_process_led_runs_once_right_away(
    tmp_path: Path, when: float | str
) -> None:
    config = build_config({"data_dir": str(tmp_path)}, env={})
    store = Store.open(config.store_url)
    store.ensure_model(name="a", task="binary", feature_names=["x"])
    ran = threading.Event()
    last = datetime.now(UTC) - timedelta(hours=5)
    scheduler = Scheduler(
        store=store,
        config=config,
        jobs=[
            PerModelJob(
                "retune_schedule", lambda cfg: when, lambda m: ran.set(), last_run=lambda m: last
            )
        ],
    )
    scheduler.start()
    try:
        assert ran.wait(30), "the missed run waited for the next tick"
        job = scheduler._aps.get_job("retune_schedule:a")
        assert job.next_run_time > datetime.now(UTC)  # once, then on the schedule again
    finally:
        scheduler.shutdown()
        store.close()


def test_a_schedule_not_yet_due_keeps_its_time(tmp_path: Path) -> None:
    config = build_config({"data_dir": str(tmp_path)}, env={})
    store = Store.open(config.store_url)
    store.ensure_model(name="a", task="binary", feature_names=["x"])
    last = datetime.now(UTC) - timedelta(minutes=10)
    scheduler = Scheduler(
        store=store,
        config=config,
        jobs=[
            PerModelJob(
                "retune_schedule", lambda cfg: 3600.0, lambda m: None, last_run=lambda m: last
            )
        ],
    )
    scheduler.start()
    try:
        job = scheduler._aps.get_job("retune_schedule:a")
        assert job.next_run_time == last + timedelta(hours=1)
    finally:
        scheduler.shutdown()
        store.close()


@dataclass
class Leading:
    """A leader running one scheduled job, ``slow``, until ``release`` is set."""

    store: Store
    scheduler: Scheduler
    release: threading.Event


@contextmanager
def leading_with_a_running_job(
    tmp_path: Path, *, lease_ttl_s: float, stop_grace_s: float = STOP_GRACE_S
) -> Iterator[Leading]:
    raw = {"data_dir": str(tmp_path), "scheduler": {"lease_ttl_s": lease_ttl_s}}
    config = build_config(raw, env={})
    store = Store.open(config.store_url)
    started, release = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(60)

    scheduler = Scheduler(
        store=store,
        config=config,
        jobs=[],
        tasks=[Task("slow", 3600, slow)],
        stop_grace_s=stop_grace_s,
    )
    scheduler.start()
    try:
        assert scheduler.leader
        scheduler._aps.get_job("slow").modify(next_run_time=datetime.now(UTC))
        assert started.wait(30)
        yield Leading(store, scheduler, release)
    finally:
        release.set()
        store.close()


def test_shutdown_waits_for_a_running_job_before_releasing_the_lease(tmp_path: Path) -> None:
    """Shutdown released the lease while a scheduled job was still running (APScheduler's
    ``wait=False``): another process could take the lease and run the same model's job
    concurrently, and the daemon closed the store under the running job."""
    with leading_with_a_running_job(tmp_path, lease_ttl_s=30) as leading:
        stopped = threading.Thread(target=leading.scheduler.shutdown)
        stopped.start()
        try:
            stopped.join(0.5)
            assert stopped.is_alive(), "shutdown returned while the job was running"
            assert not leading.store.acquire_lease("scheduler", "other", ttl_s=30)
            leading.release.set()
            stopped.join(30)
            assert not stopped.is_alive()
            assert leading.store.acquire_lease("scheduler", "other", ttl_s=30)
        finally:
            leading.release.set()
            stopped.join(30)


def test_a_job_still_running_after_the_grace_period_does_not_hold_shutdown(
    tmp_path: Path,
) -> None:
    with leading_with_a_running_job(tmp_path, lease_ttl_s=30, stop_grace_s=0.2) as leading:
        leading.scheduler.shutdown()
        assert leading.store.acquire_lease("scheduler", "other", ttl_s=30)


def test_a_renewal_after_shutdown_does_not_take_the_lease_back(tmp_path: Path) -> None:
    """A renewal in flight on the lease thread when shutdown released the lease took it
    back, so no other process could lead until it expired."""
    config = build_config({"data_dir": str(tmp_path), "scheduler": {"lease_ttl_s": 30}}, env={})
    store = Store.open(config.store_url)
    scheduler = Scheduler(store=store, config=config, jobs=[])
    scheduler.start()
    try:
        scheduler.shutdown()
        scheduler._lead()
        assert not scheduler.leader
        assert store.acquire_lease("scheduler", "other", ttl_s=30)
    finally:
        store.close()


def test_a_model_whose_trigger_cannot_be_added_does_not_stop_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A trigger APScheduler refuses (an interval whose seconds overflow a timedelta)
    raised out of the renewal: the leader held the lease with no job for any model."""
    config = build_config({"data_dir": str(tmp_path)}, env={})
    store = Store.open(config.store_url)
    for name in ("a", "b", "c"):
        store.ensure_model(name=name, task="binary", feature_names=["x"])

    def when(cfg: ModelConfig) -> float:
        return 1e12 if cfg.name == "b" else 60.0

    scheduler = Scheduler(
        store=store, config=config, jobs=[PerModelJob("evaluate", when, lambda model: None)]
    )
    try:
        scheduler._lead()
        assert scheduler.leader
        assert scheduler.scheduled() == [
            "archive_studies",
            "evaluate:a",
            "evaluate:c",
            "expire_approvals",
        ]
        assert "evaluate:b" in caplog.text
    finally:
        store.release_lease("scheduler", scheduler.holder)
        store.close()


def test_a_shutting_down_leader_keeps_its_lease_while_its_job_runs(tmp_path: Path) -> None:
    """Shutdown stopped the renewals with the scheduler's threads, so a lease shorter than
    the grace expired under the running job and another process led beside it."""
    with leading_with_a_running_job(tmp_path, lease_ttl_s=2) as leading:
        stopped = threading.Thread(target=leading.scheduler.shutdown)
        stopped.start()
        try:
            for _ in range(10):  # 5 s: two and a half lease lifetimes
                assert not leading.store.acquire_lease("scheduler", "other", ttl_s=2)
                assert not leading.release.wait(0.5)
            leading.release.set()
            stopped.join(30)
            assert not stopped.is_alive()
            assert leading.store.acquire_lease("scheduler", "other", ttl_s=2)
        finally:
            leading.release.set()
            stopped.join(30)


def test_shutdown_is_not_held_by_a_renewal_hanging_in_the_store(tmp_path: Path) -> None:
    """A renewal held the lease lock while the store hung, and shutdown waited for it
    without bound; the renewal, once back, must not keep the lease either."""
    config = build_config({"data_dir": str(tmp_path), "scheduler": {"lease_ttl_s": 30}}, env={})
    store = Store.open(config.store_url)
    scheduler = Scheduler(store=store, config=config, jobs=[], stop_grace_s=0.2)
    scheduler.start()
    real, hung, release = store.acquire_lease, threading.Event(), threading.Event()

    def hanging(name: str, holder: str, *, ttl_s: float) -> bool:
        hung.set()
        release.wait(60)
        return real(name, holder, ttl_s=ttl_s)

    renewal = threading.Thread(target=scheduler._lead)
    try:
        store.acquire_lease = hanging  # type: ignore[method-assign]
        renewal.start()
        assert hung.wait(30)
        stopped = threading.Thread(target=scheduler.shutdown)
        stopped.start()
        stopped.join(10)
        assert not stopped.is_alive(), "shutdown waited for the hanging renewal"
        release.set()
        renewal.join(30)
        store.acquire_lease = real  # type: ignore[method-assign]
        assert not scheduler.leader
        assert store.acquire_lease("scheduler", "other", ttl_s=30)
    finally:
        release.set()
        store.close()


def test_closing_the_daemon_stops_the_workers_while_scheduled_jobs_finish(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Shutdown waited up to 20 s for running scheduled jobs and only then gave workers
    their 30 s: with uvicorn's 10 s, a stuck worker was killed only after the 60 s a
    container gets to stop."""
    daemon, _ = make_daemon(tmp_path, trained, extra={"tuning": {"workers": 0}})
    started, workers_stopping, finished = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def slow() -> None:  # ends when the workers are asked to stop, or after 5 s
        started.set()
        workers_stopping.wait(5)
        finished.set()

    stop = daemon.launcher.stop

    def stopping() -> None:
        seen.append(not finished.is_set())
        workers_stopping.set()
        stop()

    daemon.scheduler.tasks.append(Task("slow", 3600, slow))
    daemon.start()
    try:
        daemon.scheduler._aps.get_job("slow").modify(next_run_time=datetime.now(UTC))
        assert started.wait(30)
        daemon.launcher.stop = stopping  # type: ignore[method-assign]
    finally:
        daemon.close()
    assert seen == [True], "the workers were stopped only after the scheduled job ended"


def test_a_renewal_in_flight_when_shutdown_begins_keeps_the_lease_while_the_job_runs(
    tmp_path: Path,
) -> None:
    """A renewal waiting on the store when shutdown began released the lease on its
    return, though shutdown was still holding it for the running job: another process
    could lead beside it."""
    with leading_with_a_running_job(tmp_path, lease_ttl_s=30) as leading:
        store, scheduler = leading.store, leading.scheduler
        real, asked, answer = store.acquire_lease, threading.Event(), threading.Event()

        def slow_store(name: str, holder: str, *, ttl_s: float) -> bool:
            asked.set()
            answer.wait(60)
            return real(name, holder, ttl_s=ttl_s)

        store.acquire_lease = slow_store  # type: ignore[method-assign]
        renewal = threading.Thread(target=scheduler._lead)  # the lease thread's tick
        renewal.start()
        assert asked.wait(30)
        stopped = threading.Thread(target=scheduler.shutdown)
        stopped.start()
        try:
            assert not leading.release.wait(0.3)  # shutdown is waiting for the job
            answer.set()
            renewal.join(30)
            store.acquire_lease = real  # type: ignore[method-assign]
            assert not leading.release.wait(0.3)
            assert not store.acquire_lease("scheduler", "other", ttl_s=30)
            leading.release.set()
            stopped.join(30)
            assert store.acquire_lease("scheduler", "other", ttl_s=30)
        finally:
            answer.set()
            leading.release.set()
            stopped.join(30)


def test_shutdown_keeps_to_its_grace_with_an_injected_clock(tmp_path: Path) -> None:
    """The grace was counted on the injected lease clock: one that does not advance (a
    test's, a library user's) kept shutdown waiting for a stuck job for ever."""
    config = build_config({"data_dir": str(tmp_path), "scheduler": {"lease_ttl_s": 30}}, env={})
    store = Store.open(config.store_url)
    started, release = threading.Event(), threading.Event()

    def stuck() -> None:
        started.set()
        release.wait(60)

    scheduler = Scheduler(
        store=store,
        config=config,
        jobs=[],
        tasks=[Task("stuck", 3600, stuck)],
        clock=FakeClock(),
        stop_grace_s=0.2,
    )
    scheduler.start()
    stopped = threading.Thread(target=scheduler.shutdown)
    try:
        scheduler._aps.get_job("stuck").modify(next_run_time=datetime.now(UTC))
        assert started.wait(30)
        stopped.start()
        stopped.join(10)
        assert not stopped.is_alive(), "shutdown waited beyond its grace"
    finally:
        release.set()
        stopped.join(30)
        store.close()


def test_a_due_run_held_back_past_a_minute_runs_late_rather_than_never(tmp_path: Path) -> None:
    """APScheduler 3 drops a run that starts more than ``misfire_grace_time`` after its
    time, and the per-model jobs had 60 s: a scheduled retune that waited behind ten long
    evaluations for a thread was lost with nothing recorded (retune_owed had no
    ``schedule`` event to retry), and ran a whole period later. APScheduler judges the
    lateness when a thread starts the run; here the run is 120 s late when it is due."""
    config = build_config({"data_dir": str(tmp_path)}, env={})
    store = Store.open(config.store_url)
    store.ensure_model(name="a", task="binary", feature_names=["x"])
    ran: list[str] = []
    outcomes: list[int] = []
    decided = threading.Event()

    def finished(event: JobEvent) -> None:
        if event.job_id == "retune_schedule:a":
            outcomes.append(event.code)
            decided.set()

    scheduler = Scheduler(
        store=store,
        config=config,
        jobs=[PerModelJob("retune_schedule", lambda cfg: 3600.0, ran.append)],
    )
    scheduler._aps.add_listener(finished, EVENT_JOB_EXECUTED | EVENT_JOB_MISSED)
    scheduler.start()
    try:
        job = scheduler._aps.get_job("retune_schedule:a")
        job.modify(next_run_time=datetime.now(UTC) - timedelta(seconds=120))
        assert decided.wait(10)
        assert outcomes == [EVENT_JOB_EXECUTED] and ran == ["a"]
        assert job.next_run_time > datetime.now(UTC)  # one late run, then on the schedule
    finally:
        scheduler.shutdown()
        store.close()


def test_interval_jobs_added_together_start_spread_over_their_interval(tmp_path: Path) -> None:
    """Every model's evaluation was added in one renewal, so all of them fired at the same
    instant every interval: with more models than the pool's 10 threads and runs longer
    than the grace time, the same two of twelve models were never evaluated."""
    config = build_config({"data_dir": str(tmp_path)}, env={})
    store = Store.open(config.store_url)
    names = [f"m{i:02d}" for i in range(12)]
    for name in names:
        store.ensure_model(name=name, task="binary", feature_names=["x"])
    scheduler = Scheduler(
        store=store, config=config, jobs=[PerModelJob("evaluate", lambda cfg: 60.0, print)]
    )
    before = datetime.now(UTC)
    scheduler.start()
    after = datetime.now(UTC)
    try:
        firsts = sorted(scheduler._aps.get_job(f"evaluate:{n}").next_run_time for n in names)
        assert [b - a for a, b in zip(firsts, firsts[1:], strict=False)] == [
            timedelta(seconds=5)
        ] * 11
        assert before + timedelta(seconds=5) <= firsts[0] <= after + timedelta(seconds=5)
        assert firsts[-1] <= after + timedelta(seconds=60)  # none later than before
    finally:
        scheduler.shutdown()
        store.close()


@contextmanager
def every_shared_thread_busy(scheduler: Scheduler) -> Iterator[None]:
    """Ten running jobs hold every thread of the per-model jobs' shared pool."""
    started, release = threading.Semaphore(0), threading.Event()

    def busy() -> None:
        started.release()
        release.wait(60)

    try:
        for i in range(10):
            scheduler._aps.add_job(busy, id=f"busy{i}")
        for _ in range(10):
            assert started.acquire(timeout=30)
        yield
    finally:
        release.set()


def test_a_task_runs_while_every_per_model_job_thread_is_busy(tmp_path: Path) -> None:
    """The job launcher shared the evaluations' pool: ten long evaluations held every
    thread and queued retunes waited for them to finish before a worker started."""
    config = build_config({"data_dir": str(tmp_path)}, env={})
    store = Store.open(config.store_url)
    launched = threading.Event()
    scheduler = Scheduler(
        store=store, config=config, jobs=[], tasks=[Task("launch_jobs", 3600, launched.set)]
    )
    scheduler.start()
    try:
        with every_shared_thread_busy(scheduler):
            scheduler._aps.get_job("launch_jobs").modify(next_run_time=datetime.now(UTC))
            assert launched.wait(5), "the task waited for a per-model job's thread"
    finally:
        scheduler.shutdown()
        store.close()


def test_a_job_given_threads_of_its_own_runs_while_the_shared_pool_is_busy(
    tmp_path: Path,
) -> None:
    config = build_config({"data_dir": str(tmp_path)}, env={})
    store = Store.open(config.store_url)
    store.ensure_model(name="a", task="binary", feature_names=["x"])
    queued = threading.Event()
    scheduler = Scheduler(
        store=store,
        config=config,
        jobs=[
            PerModelJob("retune_schedule", lambda cfg: 3600.0, lambda m: queued.set(), threads=1)
        ],
    )
    scheduler.start()
    try:
        with every_shared_thread_busy(scheduler):
            scheduler._aps.get_job("retune_schedule:a").modify(next_run_time=datetime.now(UTC))
            assert queued.wait(5), "the scheduled retune waited for a shared thread"
    finally:
        scheduler.shutdown()
        store.close()


def test_a_job_s_own_pool_needs_a_thread() -> None:
    with pytest.raises(ValueError, match=r"`threads` must be at least 1, got 0"):
        PerModelJob("retune_schedule", lambda cfg: 3600.0, print, threads=0)
