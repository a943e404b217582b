"""A scheduled retune's cool-down does not count the jobs the model's schedule queued.

A ``schedule`` trigger whose ``cooldown_minutes`` equals the schedule's period (an hourly
schedule with a hand-written ``{on: schedule, do: retune}``, whose default cool-down is
60 minutes) lost about half its runs: the cool-down was measured from the previous run's
job, stamped by the database a few ms after that run fired, and the next run, fired one
period after the previous, queued a few ms either side of the cool-down's end. The
schedule sets its own cadence: only another retune (drift, manual, ...) queued within the
cool-down holds a scheduled run back, and every other trigger's cool-down still counts
the schedule's jobs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from tunewatch._actions import ActionOutcome, Dispatcher
from tunewatch._config import build_config
from tunewatch._errors import ConflictError
from tunewatch.store import Store
from tunewatch.store._clock import db_now
from tunewatch.store._schema import jobs

MODEL = "a"
PERIOD = timedelta(minutes=60)  # the schedule's, and every trigger's cool-down


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store.open(store_url)
    try:
        s.ensure_model(name=MODEL, task="binary", feature_names=["x"])
        yield s
    finally:
        s.close()


@pytest.fixture
def dispatcher(store: Store) -> Dispatcher:
    """An hourly schedule with a hand-written ``{on: schedule, do: retune}`` (the default
    60-minute cool-down), and drift and manual retunes cooling down as long."""
    minutes = PERIOD.total_seconds() / 60
    model = {
        "name": MODEL,
        "task": "binary",
        "tuning": {"schedule_hours": 1},
        "triggers": [
            {"on": "schedule", "do": "retune"},
            {"on": "drift_detected", "do": "retune", "cooldown_minutes": minutes},
            {"on": "manual", "do": "retune", "cooldown_minutes": minutes},
        ],
    }
    raw = {"tuning": {"max_concurrent_jobs": 10}, "models": [model]}
    return Dispatcher(store, build_config(raw, env={}))


def _fire(d: Dispatcher, event: str) -> ActionOutcome:
    if event == "manual":
        return d.handle(MODEL, "manual", {"reason": "new labels"}, actor="alice")
    if event == "schedule":
        return d.handle(MODEL, "schedule", {"reason": "standing schedule"})
    return d.handle(MODEL, event, {"share": 0.6})


def _retuned(store: Store, d: Dispatcher, event: str, *, ago: timedelta) -> int:
    """A job ``event`` queued that succeeded, queued ``ago`` before the database's now."""
    outcome = _fire(d, event)
    assert outcome.status == "taken" and outcome.job_id is not None, outcome.reason
    store.finish_job(outcome.job_id, status="succeeded", result={})
    with store.engine.begin() as conn:
        conn.execute(
            update(jobs).where(jobs.c.id == outcome.job_id).values(created_at=db_now(conn, -ago))
        )
    return outcome.job_id


@pytest.mark.parametrize(
    "ago",
    [PERIOD - timedelta(milliseconds=5), PERIOD / 2],
    ids=["previous-run-5ms-inside", "previous-run-well-inside"],
)
def test_a_scheduled_run_is_not_held_back_by_the_schedule_s_own_job(
    store: Store, dispatcher: Dispatcher, ago: timedelta
) -> None:
    previous = _retuned(store, dispatcher, "schedule", ago=ago)
    run = _fire(dispatcher, "schedule")
    assert run.status == "taken", run.reason
    assert run.job_id is not None and run.job_id != previous
    (taken, _) = store.list_events(model=MODEL, type="action_taken", limit=2)
    assert taken.payload["trigger"] == "schedule" and taken.payload["job"] == run.job_id


@pytest.mark.parametrize("other", ["drift_detected", "manual"])
def test_another_retune_within_the_cool_down_still_holds_a_scheduled_run_back(
    store: Store, dispatcher: Dispatcher, other: str
) -> None:
    _retuned(store, dispatcher, "schedule", ago=2 * PERIOD)
    held = _retuned(store, dispatcher, other, ago=PERIOD - timedelta(minutes=1))
    run = _fire(dispatcher, "schedule")
    assert (run.status, run.cause) == ("suppressed", "cooldown"), run.reason
    assert f"job {held} of {MODEL!r}" in run.reason
    assert run.job_id is None and not run.final
    assert dispatcher.owed(MODEL, "schedule") is None  # the model was just retuned


@pytest.mark.parametrize("event", ["drift_detected", "manual"])
def test_other_triggers_cool_downs_still_count_the_schedule_s_jobs(
    store: Store, dispatcher: Dispatcher, event: str
) -> None:
    scheduled = _retuned(store, dispatcher, "schedule", ago=timedelta(minutes=10))
    outcome = _fire(dispatcher, event)
    assert (outcome.status, outcome.cause) == ("suppressed", "cooldown"), outcome.reason
    assert f"job {scheduled} of {MODEL!r}" in outcome.reason


def test_the_store_s_cool_down_ignores_only_the_named_trigger_s_jobs(store: Store) -> None:
    """``cooldown_ignores`` names the trigger event whose jobs do not count: a job whose
    trigger names another event, or none, still does."""
    for trigger in ({"event": "schedule"}, {"event": "drift_detected"}, {}):
        with store.engine.begin() as conn:
            conn.execute(update(jobs).values(status="cancelled"))
        first, created = store.create_job(
            model=MODEL, kind="retune", trigger=trigger, spec={}, cooldown=PERIOD
        )
        assert created
        store.finish_job(first.id, status="succeeded", result={})
        counts = trigger.get("event") != "schedule"
        try:
            _, created = store.create_job(
                model=MODEL,
                kind="retune",
                trigger={"event": "schedule"},
                spec={},
                cooldown=PERIOD,
                cooldown_ignores="schedule",
            )
        except ConflictError as exc:
            assert counts and exc.code == "cooldown", trigger
        else:
            assert created and not counts, trigger
