"""A standing schedule added to a model registered long ago counts from when the leader
first saw it, as cron or APScheduler count a job from when it was added, not from the
model's registration: a weekly retune configured for an old model retuned it at deploy."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.tunewatch.conftest import MODEL
from tunewatch._config import build_config
from tunewatch._cron import crontab_trigger
from tunewatch._daemon import Daemon
from tunewatch._errors import StoreUnavailableError
from tunewatch._example import ExampleModel
from tunewatch._standing_schedule import OWED_RETRY_S
from tunewatch.store import Event, JobRow
from tunewatch.store import _events as event_rows
from tunewatch.store import _registration as registry_rows

WEEK = timedelta(hours=168)
REGISTERED_AGO = timedelta(days=90)
#: the event recording when the leader first saw a model's schedule
STARTED = "schedule_started"


class WallClock:
    """The daemon's wall clock, and the store's for the models and events it records; it
    starts at the real time, so that APScheduler, on the real one, runs nothing early."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> WallClock:
    clock = WallClock()
    monkeypatch.setattr(event_rows, "utcnow", clock)
    monkeypatch.setattr(registry_rows, "utcnow", clock)
    return clock


def _config(tmp_path: Path, store_url: str, tuning: dict[str, Any] | None) -> dict[str, Any]:
    model: dict[str, Any] = {"name": MODEL, "task": "binary"}
    if tuning is not None:
        model["tuning"] = tuning
    return {
        "data_dir": str(tmp_path),
        "store": {"url": store_url},
        "tuning": {"workers": 0},
        "models": [model],
    }


@pytest.fixture
def old_model(
    trained: list[ExampleModel], tmp_path: Path, store_url: str, clock: WallClock
) -> Iterator[Callable[[dict[str, Any] | None], Daemon]]:
    """Registers the model ``REGISTERED_AGO`` before the clock's time, with no schedule,
    then gives daemons on the config with ``tuning`` (a schedule) at the clock's time."""
    now = clock.at
    clock.at = now - REGISTERED_AGO
    registering = Daemon(build_config(_config(tmp_path, store_url, None), env={}), env={})
    registering.registry.register(
        MODEL,
        trained[0].onnx,
        trained[0].metadata,
        actor="test",
        stage="champion",
        reference=trained[0].reference,
    )
    registering.close()
    clock.at = now
    daemons: list[Daemon] = []

    def deploy(tuning: dict[str, Any] | None) -> Daemon:
        raw = _config(tmp_path, store_url, tuning)
        daemons.append(Daemon(build_config(raw, env={}), env={}, now=clock))
        daemons[-1].start()
        return daemons[-1]

    try:
        yield deploy
    finally:
        for daemon in daemons:
            daemon.close()


def _schedule_job_due(daemon: Daemon) -> datetime:
    job = daemon.scheduler._aps.get_job(f"retune_schedule:{MODEL}")
    assert job is not None
    when: datetime = job.next_run_time
    return when


def _check_what_is_owed(daemon: Daemon) -> None:
    daemon.scheduler._aps.get_job(f"retune_owed:{MODEL}").func()


def _schedule_events(daemon: Daemon) -> list[Event]:
    return daemon.store.list_events(model=MODEL, type="schedule")


def _started(daemon: Daemon) -> list[Event]:
    return daemon.store.list_events(model=MODEL, type=STARTED)


def _retunes(daemon: Daemon) -> list[JobRow]:
    return [j for j in daemon.store.list_jobs(model=MODEL) if j.trigger["event"] == "schedule"]


def test_a_weekly_schedule_added_to_an_old_model_first_runs_a_week_after_the_deploy(
    old_model: Callable[[dict[str, Any] | None], Daemon], clock: WallClock
) -> None:
    """It counted from the registration, 90 days before: due long ago, the leader ran it
    at once, and the owed check too, warning of a run that "left no `schedule` event"."""
    deployed = clock.at
    daemon = old_model({"schedule_hours": 168})
    assert _schedule_job_due(daemon) == deployed + WEEK
    [started] = _started(daemon)
    assert started.created_at == deployed and started.payload == {"schedule_hours": 168.0}
    for after in (timedelta(0), timedelta(seconds=OWED_RETRY_S + 1), WEEK - timedelta(seconds=1)):
        clock.at = deployed + after
        _check_what_is_owed(daemon)
    assert _schedule_events(daemon) == [] and _retunes(daemon) == []
    daemon.scheduler._aps.get_job(f"retune_schedule:{MODEL}").remove()
    daemon.scheduler._lead()  # added again (a failed renewal): no second record
    assert _schedule_job_due(daemon) == deployed + WEEK and len(_started(daemon)) == 1
    clock.at = deployed + WEEK + timedelta(seconds=OWED_RETRY_S + 1)
    _check_what_is_owed(daemon)  # the week is up: the run is owed (its own job was late)
    assert len(_schedule_events(daemon)) == 1 and len(_retunes(daemon)) == 1
    _check_what_is_owed(daemon)
    assert len(_retunes(daemon)) == 1


def test_a_cron_schedule_added_to_an_old_model_first_runs_at_its_next_fire_time(
    old_model: Callable[[dict[str, Any] | None], Daemon], clock: WallClock
) -> None:
    deployed = clock.at
    daemon = old_model({"schedule_cron": "0 3 * * 0"})
    sunday = crontab_trigger("0 3 * * 0").get_next_fire_time(None, deployed)
    assert _schedule_job_due(daemon) == sunday
    [started] = _started(daemon)
    assert started.created_at == deployed and started.payload == {"schedule_cron": "0 3 * * 0"}
    _check_what_is_owed(daemon)
    assert _schedule_events(daemon) == [] and _retunes(daemon) == []


def test_a_restart_before_the_first_run_keeps_counting_from_when_it_was_first_seen(
    old_model: Callable[[dict[str, Any] | None], Daemon], clock: WallClock
) -> None:
    deployed = clock.at
    old_model({"schedule_hours": 168}).close()
    clock.at = deployed + timedelta(days=3)
    restarted = old_model({"schedule_hours": 168})
    assert _schedule_job_due(restarted) == deployed + WEEK
    assert len(_started(restarted)) == 1
    _check_what_is_owed(restarted)
    assert _retunes(restarted) == []


def test_a_first_run_missed_while_the_daemon_was_down_is_caught_up(
    old_model: Callable[[dict[str, Any] | None], Daemon], clock: WallClock
) -> None:
    deployed = clock.at
    old_model({"schedule_hours": 168}).close()
    clock.at = deployed + WEEK + timedelta(days=1)  # down when the first run was due
    restarted = old_model({"schedule_hours": 168})
    assert _schedule_job_due(restarted) == clock.at  # overdue: runs now
    clock.at += timedelta(seconds=OWED_RETRY_S + 1)
    _check_what_is_owed(restarted)
    assert len(_schedule_events(restarted)) == 1 and len(_retunes(restarted)) == 1


def test_a_first_seen_record_the_store_refused_counts_from_now_not_from_registration(
    old_model: Callable[[dict[str, Any] | None], Daemon],
    clock: WallClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Counted from the registration, a store failing the write would retune every old
    model at deploy again; counted from now, as the scheduler counts without a record, and
    the owed check writes the record once the store takes it."""
    deployed = clock.at
    refused: list[str] = []
    real = event_rows.add_event_in

    def refusing_once(conn: Any, *, model: str | None, type: str, payload: Any) -> Event:
        if type == STARTED and not refused:
            refused.append(type)
            raise StoreUnavailableError("database is locked")
        return real(conn, model=model, type=type, payload=payload)

    monkeypatch.setattr(event_rows, "add_event_in", refusing_once)
    daemon = old_model({"schedule_hours": 168})
    assert refused == [STARTED] and _started(daemon) == []
    assert _schedule_job_due(daemon) == deployed + WEEK  # one model: a whole interval on
    clock.at = deployed + timedelta(seconds=OWED_RETRY_S)
    _check_what_is_owed(daemon)
    assert _schedule_events(daemon) == [] and _retunes(daemon) == []
    [started] = _started(daemon)
    assert started.created_at == clock.at
