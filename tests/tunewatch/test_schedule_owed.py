"""A standing schedule's retune that the quota kept from being queued is still owed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._daemon import Daemon
from tunewatch._errors import StoreUnavailableError
from tunewatch._example import ExampleModel
from tunewatch.store import JobRow

WEEKLY = {"schedule_hours": 168}


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
    blocker, _ = daemon.store.create_job(
        model=MODEL, kind="retune", trigger={"event": "manual"}, spec={}
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


def test_a_scheduled_retune_queued_whose_action_event_was_lost_is_not_queued_again(
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
        daemon.store.add_event = no_action_events  # type: ignore[method-assign]
        _fire_the_schedule(daemon)
        daemon.store.add_event = real  # type: ignore[method-assign]
        assert _events(daemon) == ["schedule"] and len(_schedule_jobs(daemon)) == 1
        _run_what_is_due_within(daemon, timedelta(minutes=1))
        assert len(_schedule_jobs(daemon)) == 1
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
