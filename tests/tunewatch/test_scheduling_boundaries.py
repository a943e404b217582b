"""Behaviours the scheduling, launching and dispatching tests did not pin down: each
test here fails against a plausible slip (a mutant) that the other tests let pass."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.tunewatch.test_actions_and_policies import _age_jobs, _cooling
from tests.tunewatch.test_launcher import BROKEN_WORKER, _tick_until_the_workers_exit
from tests.tunewatch.test_schedules import _leasing
from tunewatch._actions import Dispatcher
from tunewatch._config import build_config
from tunewatch._cron import crontab_trigger
from tunewatch._daemon import Daemon
from tunewatch._launcher import STALE_HEARTBEATS, JobLauncher
from tunewatch._scheduler import PerModelJob, Scheduler
from tunewatch.store import Store

WEDNESDAY = datetime(2025, 1, 1, tzinfo=UTC)


def _fires(expr: str, n: int) -> list[str]:
    trigger = crontab_trigger(expr)
    got, previous, now = [], None, WEDNESDAY
    for _ in range(n):
        nxt = trigger.get_next_fire_time(previous, now)
        assert nxt is not None
        got.append(f"{nxt:%a %d %H:%M}")
        previous, now = nxt, nxt + timedelta(seconds=1)
    return got


def test_a_day_of_week_step_from_monday_runs_through_sunday() -> None:
    """crontab reads ``1/2`` as 1-7/2: Monday, Wednesday, Friday and Sunday (7)."""
    assert _fires("0 0 * * 1/2", 4) == [
        "Wed 01 00:00",
        "Fri 03 00:00",
        "Sun 05 00:00",
        "Mon 06 00:00",
    ]


def test_a_zero_day_of_week_step_is_refused_naming_the_rule() -> None:
    with pytest.raises(ValueError, match=r"day of the week: a step must be >= 1, got '\*/0'"):
        crontab_trigger("0 3 * * */0")


def test_the_lease_counts_from_before_a_slow_renewal_was_sent(tmp_path: Path) -> None:
    """A renewal the store took 10 s to answer expires, for this process, 30 s after it
    was sent (as the store counts it), not 30 s after the answer came back."""
    store, scheduler, runs, clock = _leasing(tmp_path)
    acquire = store.acquire_lease

    def slow_acquire(*args: object, **kwargs: object) -> bool:
        clock.now += 10.0
        return acquire(*args, **kwargs)  # type: ignore[arg-type]

    store.acquire_lease = slow_acquire  # type: ignore[method-assign]
    try:
        scheduler._lead()  # sent at 1000, answered at 1010
        job = scheduler._aps.get_job("evaluate:a")
        clock.now = 1029.5
        job.func()
        clock.now = 1030.0  # the store's expiry: no longer this process's
        job.func()
        clock.now = 1035.0
        job.func()
        assert runs == ["a"]
    finally:
        store.release_lease("scheduler", scheduler.holder)
        store.close()


def test_the_lease_is_renewed_three_times_per_ttl(tmp_path: Path) -> None:
    """Renewed only once per TTL, the lease ran out at every renewal and jobs were
    skipped (or another replica took over) between ticks."""
    store, scheduler, _, _ = _leasing(tmp_path)
    scheduler.start()
    try:
        assert scheduler._renewals._interval_s == 10  # a 30 s lease
    finally:
        scheduler.shutdown()
        store.close()


def test_a_cron_job_without_a_last_run_is_scheduled_for_its_next_fire_time(
    tmp_path: Path,
) -> None:
    """Spreading is for interval jobs: a cron job counting from now keeps its cron time."""
    config = build_config({"data_dir": str(tmp_path)}, env={})
    store = Store.open(config.store_url)
    store.ensure_model(name="a", task="binary", feature_names=["x"])
    scheduler = Scheduler(
        store=store,
        config=config,
        jobs=[PerModelJob("report", lambda cfg: "0 3 * * 0", lambda model: None)],
    )
    try:
        scheduler._lead()
        assert scheduler.scheduled() == ["archive_studies", "expire_approvals", "report:a"]
        job = scheduler._aps.get_job("report:a")
        nxt = job.trigger.get_next_fire_time(None, datetime.now(UTC))
        assert nxt is not None and nxt.weekday() == 6 and nxt.hour == 3
    finally:
        store.release_lease("scheduler", scheduler.holder)
        store.close()


def test_the_first_retry_of_a_failed_start_waits_retry_after_s(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The documented back-off is 5, 10, 20, 40 s: the first wait is ``retry_after_s``."""
    store = Store.open(sqlite_url)
    store.ensure_model(name="m", task="binary", feature_names=["a"])
    job, _ = store.create_job(model="m", kind="retune", trigger={}, spec={})
    launcher = JobLauncher(
        store=store,
        config_path=tmp_path / "unused.yaml",
        workers=1,
        stale_after_s=60.0,
        command=BROKEN_WORKER,
        retry_after_s=60.0,
    )
    try:
        assert _tick_until_the_workers_exit(launcher) == [job.id]
        launcher.tick()  # reaps it: one failed start
        wait = launcher._not_before[job.id] - time.monotonic()
        assert 50.0 < wait <= 60.0
    finally:
        launcher.stop()
        store.close()


def test_a_five_minute_cool_down_still_holds_two_minutes_on(store_url: str) -> None:
    """``cooldown_minutes`` is minutes: read as seconds, it was over at once."""
    store = Store.open(store_url)
    try:
        store.ensure_model(name="a", task="binary", feature_names=["x"])
        d = _cooling(store, 5)
        taken = d.handle("a", "drift_detected", {})
        assert taken.status == "taken" and taken.job_id is not None
        store.finish_job(taken.job_id, status="succeeded", result={})  # else a duplicate
        _age_jobs(store, "a", timedelta(minutes=2))
        again = d.handle("a", "drift_detected", {})
        assert again.status == "suppressed" and again.cause == "cooldown"
        assert len(store.list_jobs(model="a")) == 1
    finally:
        store.close()


def test_the_daemon_fails_a_job_after_six_missed_heartbeats(tmp_path: Path) -> None:
    config = build_config({"data_dir": str(tmp_path), "tuning": {"heartbeat_s": 7}}, env={})
    daemon = Daemon(config, env={})
    try:
        assert STALE_HEARTBEATS == 6
        assert daemon.launcher.stale_after_s == 42.0
    finally:
        daemon.close()


def test_each_owed_retune_retried_queues_its_own_job(store_url: str) -> None:
    """A retry's dedupe key is its event's: keyed by the event type alone, the second
    owed retune was taken for a duplicate of the first one's job and never ran."""
    store = Store.open(store_url)
    try:
        for name in ("a", "b"):
            store.ensure_model(name=name, task="binary", feature_names=["x"])
        trigger = {"on": "drift_detected", "do": "retune", "cooldown_minutes": 0}
        raw = {
            "tuning": {"max_concurrent_jobs": 1},
            "models": [{"name": "a", "task": "binary", "triggers": [trigger]}],
        }
        d = Dispatcher(store, build_config(raw, env={}))
        jobs = []
        for _ in range(2):
            # another model's (an active job of a's would be its drift retune's duplicate)
            blocker, _ = store.create_job(model="b", kind="retune", trigger={}, spec={})
            assert d.handle("a", "drift_detected", {}).cause == "quota"
            store.finish_job(blocker.id, status="succeeded", result={})
            fired = d.owed("a", "drift_detected")
            assert fired is not None
            outcome = d.retry("a", fired)
            assert outcome.status == "taken" and outcome.job_id is not None, outcome.reason
            jobs.append(outcome.job_id)
            store.finish_job(outcome.job_id, status="succeeded", result={})
        assert len(set(jobs)) == 2
        assert d.owed("a", "drift_detected") is None
    finally:
        store.close()
