"""A standing schedule's retune that the quota kept from being queued is still owed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import StoreUnavailableError
from tunewatch._example import ExampleModel
from tunewatch._standing_schedule import OWED_RETRY_S
from tunewatch.store import Event, JobRow
from tunewatch.store import _events as event_rows

WEEKLY = {"schedule_hours": 168}
WEEK = timedelta(hours=168)


def _daemon(
    tmp_path: Path,
    trained: list[ExampleModel],
    *,
    store_url: str | None = None,
    triggers: list[dict[str, Any]] | None = None,
) -> Daemon:
    model: dict[str, Any] = {"name": MODEL, "task": "binary", "tuning": WEEKLY}
    if triggers is not None:
        model["triggers"] = triggers
    daemon, _ = make_daemon(
        tmp_path,
        trained,
        store_url=store_url,
        extra={"tuning": {"workers": 0, "max_concurrent_jobs": 1}, "models": [model]},
    )
    return daemon


def _fill_the_quota(daemon: Daemon) -> JobRow:
    """Another model's job takes the only slot of the quota (while one of MODEL's is
    queued or running, its scheduled retune is that job's duplicate)."""
    daemon.store.ensure_model(name="other", task="binary", feature_names=["x"])
    blocker, _ = daemon.store.create_job(
        model="other", kind="retune", trigger={"event": "manual"}, spec={}
    )
    return blocker


def _fire_the_schedule(daemon: Daemon) -> None:
    daemon.scheduler._aps.get_job(f"retune_schedule:{MODEL}").func()


def _run_what_is_due_within(daemon: Daemon, within: timedelta) -> None:
    """Run every scheduled job (but the lease's) due within ``within`` from now, as the
    scheduler would once that much time passed."""
    horizon = datetime.now(UTC) + within
    for job in daemon.scheduler._aps.get_jobs():
        if job.id != "leadership" and job.next_run_time <= horizon:
            job.func()


def _schedule_jobs(daemon: Daemon) -> list[JobRow]:
    return [j for j in daemon.store.list_jobs(model=MODEL) if j.trigger["event"] == "schedule"]


def _events(daemon: Daemon) -> list[str]:
    return [
        e.type
        for e in reversed(daemon.store.list_events(model=MODEL, limit=100))
        if e.type == "schedule" or e.type.startswith("action_")
    ]


def test_a_scheduled_retune_the_quota_suppressed_is_queued_once_a_slot_frees(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """The schedule event restarted the period though no job was queued: a weekly retune
    the quota suppressed waited a week for the next one."""
    daemon = _daemon(tmp_path, trained, store_url=store_url)
    daemon.start()
    try:
        blocker = _fill_the_quota(daemon)
        _fire_the_schedule(daemon)
        assert _schedule_jobs(daemon) == []
        daemon.store.finish_job(blocker.id, status="succeeded", result={})
        _run_what_is_due_within(daemon, timedelta(minutes=1))
        [job] = _schedule_jobs(daemon)
        assert job.status == "queued"
        assert _events(daemon) == ["schedule", "action_suppressed", "action_taken"]
    finally:
        daemon.close()


def test_an_owed_scheduled_retune_records_nothing_while_the_quota_stays_full(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    daemon = _daemon(tmp_path, trained)
    daemon.start()
    try:
        blocker = _fill_the_quota(daemon)
        _fire_the_schedule(daemon)
        for _ in range(5):
            _run_what_is_due_within(daemon, timedelta(minutes=1))
        assert _events(daemon) == ["schedule", "action_suppressed"]
        assert _schedule_jobs(daemon) == []
        daemon.store.finish_job(blocker.id, status="succeeded", result={})
        for _ in range(3):  # queued once, then settled: no second job
            _run_what_is_due_within(daemon, timedelta(minutes=1))
        assert len(_schedule_jobs(daemon)) == 1
        assert _events(daemon) == ["schedule", "action_suppressed", "action_taken"]
        # the period still counts from the schedule event
        job = daemon.scheduler._aps.get_job(f"retune_schedule:{MODEL}")
        job.remove()
        daemon.scheduler._lead()
        (fired,) = daemon.store.list_events(model=MODEL, type="schedule")
        job = daemon.scheduler._aps.get_job(f"retune_schedule:{MODEL}")
        assert job.next_run_time == fired.created_at + timedelta(hours=168)
    finally:
        daemon.close()


def test_an_owed_scheduled_retune_is_still_owed_after_a_restart(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    daemon = _daemon(tmp_path, trained, store_url=store_url)
    daemon.start()
    try:
        blocker = _fill_the_quota(daemon)
        _fire_the_schedule(daemon)
    finally:
        daemon.close()
    restarted = Daemon(daemon.config, env={})
    restarted.start()
    try:
        restarted.store.finish_job(blocker.id, status="succeeded", result={})
        _run_what_is_due_within(restarted, timedelta(minutes=1))
        assert len(_schedule_jobs(restarted)) == 1
        assert _events(restarted) == ["schedule", "action_suppressed", "action_taken"]
    finally:
        restarted.close()


def test_a_scheduled_retune_whose_job_could_not_be_queued_is_owed(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The store failed after the schedule event was recorded: no job, no action event."""
    daemon = _daemon(tmp_path, trained)
    daemon.start()
    real = daemon.store.create_job

    def unavailable(**kwargs: Any) -> tuple[JobRow, bool]:
        raise StoreUnavailableError("the database is restarting")

    try:
        daemon.store.create_job = unavailable  # type: ignore[method-assign]
        _fire_the_schedule(daemon)  # logged and counted by the job boundary
        daemon.store.create_job = real  # type: ignore[method-assign]
        assert _events(daemon) == ["schedule"]
        _run_what_is_due_within(daemon, timedelta(minutes=1))
        assert len(_schedule_jobs(daemon)) == 1
        assert _events(daemon) == ["schedule", "action_taken"]
    finally:
        daemon.close()


@pytest.mark.parametrize(
    "host_ahead",
    [
        pytest.param(timedelta(0), id="clocks_agree"),
        pytest.param(timedelta(milliseconds=20), id="host_clock_20ms_ahead_of_the_db"),
    ],
)
def test_a_scheduled_retune_queued_whose_action_event_was_lost_is_not_queued_again(
    trained: list[ExampleModel],
    tmp_path: Path,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
    host_ahead: timedelta,
) -> None:
    """The event is stamped by the host's clock, its job by the database's: with the
    host's a few ms ahead, the job queued right after the event looked older than it, the
    retune looked owed still, and the retry queued a second job."""
    monkeypatch.setattr(event_rows, "utcnow", lambda: datetime.now(UTC) + host_ahead)
    daemon = _daemon(tmp_path, trained, store_url=store_url)
    daemon.start()
    real = daemon.store.add_event

    def no_action_events(*, model: str | None, type: str, payload: Any) -> Any:
        if type.startswith("action_"):
            raise StoreUnavailableError("the database is restarting")
        return real(model=model, type=type, payload=payload)

    try:
        daemon.store.add_event = no_action_events  # type: ignore[method-assign]
        _fire_the_schedule(daemon)
        daemon.store.add_event = real  # type: ignore[method-assign]
        [job] = _schedule_jobs(daemon)
        assert _events(daemon) == ["schedule"]
        # it ran already: the quota would not hold a second one back
        daemon.store.finish_job(job.id, status="succeeded", result={})
        _run_what_is_due_within(daemon, timedelta(minutes=1))
        assert [j.id for j in _schedule_jobs(daemon)] == [job.id]
        assert _events(daemon) == ["schedule"]
    finally:
        daemon.close()


def test_a_scheduled_retune_an_older_version_queued_without_a_key_is_not_queued_again(
    trained: list[ExampleModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job queued before jobs were keyed by their event, its action event lost, is
    found by its trigger, within a tolerance of the two clocks (the host's 20 ms ahead)."""
    monkeypatch.setattr(
        event_rows, "utcnow", lambda: datetime.now(UTC) + timedelta(milliseconds=20)
    )
    daemon = _daemon(tmp_path, trained)
    daemon.start()
    try:
        payload = {"reason": "standing schedule"}
        daemon.store.add_event(model=MODEL, type="schedule", payload=payload)
        old, _ = daemon.store.create_job(  # as the older version queued it: no key
            model=MODEL, kind="retune", trigger={"event": "schedule", **payload}, spec={}
        )
        daemon.store.finish_job(old.id, status="succeeded", result={})
        _run_what_is_due_within(daemon, timedelta(minutes=1))
        assert [j.id for j in _schedule_jobs(daemon)] == [old.id]
        assert _events(daemon) == ["schedule"]
    finally:
        daemon.close()


def test_a_retry_whose_action_event_was_lost_queues_no_second_job(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    daemon = _daemon(tmp_path, trained)
    daemon.start()
    real = daemon.store.add_event

    def no_action_events(*, model: str | None, type: str, payload: Any) -> Any:
        if type.startswith("action_"):
            raise StoreUnavailableError("the database is restarting")
        return real(model=model, type=type, payload=payload)

    try:
        blocker = _fill_the_quota(daemon)
        _fire_the_schedule(daemon)
        daemon.store.finish_job(blocker.id, status="succeeded", result={})
        daemon.store.add_event = no_action_events  # type: ignore[method-assign]
        _run_what_is_due_within(daemon, timedelta(minutes=1))  # queued; its event lost
        daemon.store.add_event = real  # type: ignore[method-assign]
        assert len(_schedule_jobs(daemon)) == 1
        assert _events(daemon) == ["schedule", "action_suppressed"]
        _run_what_is_due_within(daemon, timedelta(minutes=1))
        assert len(_schedule_jobs(daemon)) == 1
        assert _events(daemon) == ["schedule", "action_suppressed", "action_duplicate"]
    finally:
        daemon.close()


def test_a_scheduled_retune_the_cooldown_suppressed_is_not_owed(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    daemon = _daemon(
        tmp_path,
        trained,
        triggers=[{"on": "schedule", "do": "retune", "cooldown_minutes": 60}],
    )
    daemon.start()
    try:
        recent, _ = daemon.store.create_job(  # queued just now: within the cool-down
            model=MODEL, kind="retune", trigger={"event": "manual"}, spec={}
        )
        daemon.store.finish_job(recent.id, status="succeeded", result={})
        _fire_the_schedule(daemon)
        _run_what_is_due_within(daemon, timedelta(minutes=1))
        assert _schedule_jobs(daemon) == []
        assert _events(daemon) == ["schedule", "action_suppressed"]
        (suppressed,) = daemon.store.list_events(model=MODEL, type="action_suppressed")
        assert suppressed.payload["cause"] == "cooldown"
    finally:
        daemon.close()


def test_a_schedule_without_a_retune_trigger_owes_nothing(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A schedule with no `on: schedule` trigger at all is a config error
    (tests/tunewatch/test_config_consistency.py)."""
    daemon = _daemon(tmp_path, trained, triggers=[{"on": "schedule", "do": "notify"}])
    daemon.start()
    try:
        _fire_the_schedule(daemon)
        _run_what_is_due_within(daemon, timedelta(minutes=1))
        assert _schedule_jobs(daemon) == []
        assert daemon.store.count_active_jobs() == 0
    finally:
        daemon.close()


class WallClock:
    """The daemon's wall clock, and the store's for the events it records, set by the test."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at


def _daemon_on(
    clock: WallClock, tmp_path: Path, trained: list[ExampleModel], store_url: str
) -> Daemon:
    """A daemon on a weekly schedule whose wall clock is ``clock``."""
    raw = {
        "data_dir": str(tmp_path),
        "store": {"url": store_url},
        "tuning": {"workers": 0},
        "models": [{"name": MODEL, "task": "binary", "tuning": WEEKLY}],
    }
    daemon = Daemon(build_config(raw, env={}), env={}, now=clock)
    daemon.registry.register(
        MODEL,
        trained[0].onnx,
        trained[0].metadata,
        actor="test",
        stage="champion",
        reference=trained[0].reference,
    )  # type: ignore[arg-type]
    return daemon


def _refusing_once(
    real: Callable[..., Any], refuse: Callable[[dict[str, Any]], bool], refused: list[str]
) -> Callable[..., Any]:
    """``real`` (a store method), but the first call ``refuse`` picks fails as a locked
    SQLite database does; each refusal is noted in ``refused``."""

    def call(**kwargs: Any) -> Any:
        if not refused and refuse(kwargs):
            refused.append(str(kwargs.get("type")))
            raise StoreUnavailableError("database is locked")
        return real(**kwargs)

    return call


def _check_what_is_owed(daemon: Daemon) -> None:
    daemon.scheduler._aps.get_job(f"retune_owed:{MODEL}").func()


def _schedule_events(daemon: Daemon) -> list[Event]:
    return daemon.store.list_events(model=MODEL, type="schedule")


def test_a_scheduled_retune_whose_event_the_store_refused_runs_once_the_store_is_back(
    trained: list[ExampleModel],
    tmp_path: Path,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run's `schedule` event could not be written ("database is locked"): no event,
    no job, and the owed-retry job looked only at the previous run's event, whose job was
    queued. The retune waited a whole period, though a restart would have run it at once."""
    clock = WallClock()
    monkeypatch.setattr(event_rows, "utcnow", clock)  # events recorded by the daemon's clock
    daemon = _daemon_on(clock, tmp_path, trained, store_url)
    daemon.start()
    try:
        _fire_the_schedule(daemon)  # the first run, recorded
        [first] = _schedule_events(daemon)
        # done within the week (a queued one would be the next run's duplicate)
        daemon.store.finish_job(_schedule_jobs(daemon)[0].id, status="succeeded")
        clock.at = first.created_at + WEEK  # the next run is due
        refused: list[str] = []
        daemon.store.add_event = _refusing_once(  # type: ignore[method-assign]
            daemon.store.add_event, lambda kw: kw["type"] == "schedule", refused
        )
        _fire_the_schedule(daemon)  # logged and counted by the job boundary
        assert refused == ["schedule"] and len(_schedule_jobs(daemon)) == 1
        clock.at = first.created_at + WEEK + timedelta(seconds=OWED_RETRY_S)
        _check_what_is_owed(daemon)  # the schedule's own run may be on its way yet
        assert len(_schedule_events(daemon)) == 1 and len(_schedule_jobs(daemon)) == 1
        clock.at += timedelta(seconds=1)
        _check_what_is_owed(daemon)
        assert len(_schedule_events(daemon)) == 2
        [caught_up, _] = _schedule_jobs(daemon)  # newest first
        assert caught_up.status == "queued"
        assert _events(daemon) == ["schedule", "action_taken"] * 2
        # the schedule counts from the run caught up, as a restarted leader would
        [second, _] = _schedule_events(daemon)
        job = daemon.scheduler._aps.get_job(f"retune_schedule:{MODEL}")
        assert job.next_run_time == second.created_at + WEEK
        _check_what_is_owed(daemon)
        _fire_the_schedule(daemon)  # the schedule's own run, late: the run caught up
        assert len(_schedule_events(daemon)) == 2 and len(_schedule_jobs(daemon)) == 2
    finally:
        daemon.close()


def test_the_schedule_s_own_run_long_late_after_a_catch_up_is_the_same_run(
    trained: list[ExampleModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catch-up ran a run whose own job was only waiting for the schedule's single
    thread (many models due at one cron time, or a leader taking over after downtime); the
    own run, executing more than 30 s later, recorded a second `schedule` event: two
    retunes for one due time."""
    clock = WallClock()
    monkeypatch.setattr(event_rows, "utcnow", clock)
    daemon = _daemon_on(clock, tmp_path, trained, f"sqlite:///{tmp_path / 'tw.db'}")
    daemon.start()
    try:
        _fire_the_schedule(daemon)
        [first] = _schedule_events(daemon)
        daemon.store.finish_job(_schedule_jobs(daemon)[0].id, status="succeeded")
        clock.at = first.created_at + WEEK + timedelta(seconds=OWED_RETRY_S + 1)
        _check_what_is_owed(daemon)  # the own run is still queued behind the others
        assert len(_schedule_events(daemon)) == 2
        clock.at += timedelta(seconds=2 * OWED_RETRY_S + 1)
        _fire_the_schedule(daemon)  # the own run for the same due time, at last
        assert len(_schedule_events(daemon)) == 2 and len(_schedule_jobs(daemon)) == 2
    finally:
        daemon.close()


def test_an_owed_check_before_the_schedule_is_due_queues_nothing(
    trained: list[ExampleModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = WallClock()
    monkeypatch.setattr(event_rows, "utcnow", clock)
    daemon = _daemon_on(clock, tmp_path, trained, f"sqlite:///{tmp_path / 'tw.db'}")
    daemon.start()
    try:
        _fire_the_schedule(daemon)
        [first] = _schedule_events(daemon)
        for after in (timedelta(0), WEEK / 2, WEEK - timedelta(seconds=1), WEEK):
            clock.at = first.created_at + after
            _check_what_is_owed(daemon)
        assert len(_schedule_events(daemon)) == 1 and len(_schedule_jobs(daemon)) == 1
    finally:
        daemon.close()


def test_a_schedule_a_new_leader_could_not_read_the_last_run_of_is_caught_up(
    trained: list[ExampleModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taking over with the store failing, the leader counted the schedule from then: a
    week on, though a run was due an hour ago."""
    clock = WallClock()
    monkeypatch.setattr(event_rows, "utcnow", clock)
    daemon = _daemon_on(clock, tmp_path, trained, f"sqlite:///{tmp_path / 'tw.db'}")
    try:
        daemon.dispatcher.handle(MODEL, "schedule", {"reason": "standing schedule"})
        [first] = _schedule_events(daemon)
        daemon.store.finish_job(_schedule_jobs(daemon)[0].id, status="succeeded")
        clock.at = first.created_at + WEEK + timedelta(hours=1)  # no process led meanwhile
        refused: list[str] = []
        daemon.store.list_events = _refusing_once(  # type: ignore[method-assign]
            daemon.store.list_events, lambda kw: kw.get("type") == "schedule", refused
        )
        daemon.scheduler._lead()
        assert refused == ["schedule"]
        job = daemon.scheduler._aps.get_job(f"retune_schedule:{MODEL}")
        assert job.next_run_time == clock.at + WEEK  # counted from now, as without a record
        _check_what_is_owed(daemon)
        assert len(_schedule_events(daemon)) == 2 and len(_schedule_jobs(daemon)) == 2
    finally:
        daemon.scheduler.store.release_lease("scheduler", daemon.scheduler.holder)
        daemon.close()
