"""A model has at most one active retune job, whatever triggers fire, and only a job that
may have retuned it holds its cool-down.

Triggers without a cool-down (``schedule``, ``manual``) queued a second job beside the
model's active one, which took another model's quota slot; a failed or cancelled job held
the cool-down, and the drift retune it suppressed was settled, so lost."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tunewatch._actions import Dispatcher
from tunewatch._config import build_config
from tunewatch.store import Store


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store.open(store_url)
    try:
        for name in ("a", "b"):
            s.ensure_model(name=name, task="binary", feature_names=["x"])
        yield s
    finally:
        s.close()


def _dispatcher(store: Store, *, quota: int = 2) -> Dispatcher:
    """The default triggers: drift retunes with a 6 h cool-down, the schedule and a
    manual retune with none."""
    return Dispatcher(store, build_config({"tuning": {"max_concurrent_jobs": quota}}, env={}))


@pytest.mark.parametrize(
    ("first", "second"),
    [("drift_detected", "schedule"), ("schedule", "drift_detected")],
    ids=["drift-then-schedule", "schedule-then-drift"],
)
def test_triggers_firing_together_queue_one_job_and_leave_the_quota_to_others(
    store: Store, first: str, second: str
) -> None:
    d = _dispatcher(store)
    queued = d.handle("a", first, {})
    again = d.handle("a", second, {})
    assert queued.status == "taken" and queued.job_id is not None
    assert (again.status, again.job_id) == ("duplicate", queued.job_id)
    assert again.reason == f"already handled by job {queued.job_id}"
    assert [job.id for job in store.list_jobs(model="a")] == [queued.job_id]
    duplicates = store.list_events(model="a", type="action_duplicate", limit=5)
    assert [(e.payload["trigger"], e.payload["job"]) for e in duplicates] == [
        (second, queued.job_id)
    ]
    other = d.handle("b", "drift_detected", {})
    assert other.status == "taken", other.reason
    assert store.count_active_jobs() == 2


def test_a_manual_retune_while_the_model_s_job_is_active_is_that_job(store: Store) -> None:
    d = _dispatcher(store)
    drift = d.handle("a", "drift_detected", {})
    manual = d.handle("a", "manual", {"reason": "new labels"}, actor="alice")
    assert (manual.status, manual.job_id) == ("duplicate", drift.job_id)
    (entry,) = store.audit_log(limit=5, action="request_retune")
    assert (entry.actor, entry.target) == ("alice", "a")
    assert entry.details == {
        "reason": "new labels",
        "status": "duplicate",
        "job": drift.job_id,
        "why": f"already handled by job {drift.job_id}",
    }
    assert len(store.list_jobs(model="a")) == 1


def test_a_succeeded_job_is_no_duplicate_but_still_holds_the_cool_down(store: Store) -> None:
    d = _dispatcher(store)
    first = d.handle("a", "manual", {"reason": "first"}, actor="alice")
    assert first.job_id is not None
    store.finish_job(first.job_id, status="succeeded", result={})
    drift = d.handle("a", "drift_detected", {})
    assert (drift.status, drift.cause) == ("suppressed", "cooldown"), drift.reason
    manual = d.handle("a", "manual", {"reason": "again"}, actor="alice")  # no cool-down
    assert manual.status == "taken" and manual.job_id != first.job_id


def test_triggers_firing_at_once_from_threads_queue_one_job(store: Store) -> None:
    d = _dispatcher(store, quota=10)
    fired = ["schedule", "manual", "manual", "schedule", "drift_detected", "alert_received"]
    start = threading.Barrier(len(fired))
    outcomes: list[tuple[str, int | None]] = []

    def run(event: str) -> None:
        start.wait()
        outcome = d.handle("a", event, {})
        outcomes.append((outcome.status, outcome.job_id))

    threads = [threading.Thread(target=run, args=(event,)) for event in fired]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (job,) = store.list_jobs(model="a")
    assert sorted(outcomes) == [("duplicate", job.id)] * 5 + [("taken", job.id)]


@pytest.mark.parametrize("end", ["failed", "cancelled"])
def test_a_job_that_failed_or_was_cancelled_holds_no_cool_down(store: Store, end: str) -> None:
    d = _dispatcher(store)
    manual = d.handle("a", "manual", {"reason": "try"}, actor="alice")
    assert manual.job_id is not None
    if end == "failed":
        store.finish_job(manual.job_id, status="failed", error="worker exited 1")
    else:
        store.cancel_job(manual.job_id, actor="alice", reason="wrong model")
    drift = d.handle("a", "drift_detected", {"reason": "2 consecutive alarming drift windows"})
    assert drift.status == "taken", drift.reason
    queued = store.list_jobs(model="a", status="queued")
    assert [(job.id, job.trigger["event"]) for job in queued] == [(drift.job_id, "drift_detected")]
    (action,) = store.list_events(model="a", type="action_taken", limit=5)[:1]
    assert (action.payload["trigger"], action.payload["job"]) == ("drift_detected", drift.job_id)
    assert d.owed("a", "drift_detected") is None
