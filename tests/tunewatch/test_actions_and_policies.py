"""Triggers to actions (cool-downs, quota, reasons) and event policies (hysteresis)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tunewatch._actions import Dispatcher
from tunewatch._config import build_config
from tunewatch._policies import EventPolicy, decide
from tunewatch.store import EvaluationRow, Store

T0 = datetime(2026, 11, 28, 12, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(f"sqlite:///{tmp_path}/t.db")
    for name in ("a", "b", "c"):
        s.ensure_model(name=name, task="binary", feature_names=["x"])
    return s


def test_cooldown_quota_and_dedupe_suppress_with_reasons(store: Store) -> None:
    config = build_config(
        {
            "tuning": {"max_concurrent_jobs": 2},
            "models": [
                {
                    "name": "a",
                    "task": "binary",
                    "triggers": [{"on": "drift_detected", "do": "retune", "cooldown_minutes": 30}],
                }
            ],
        },
        env={},
    )
    clock = Clock()
    d = Dispatcher(store, config, clock=clock)
    first = d.handle("a", "drift_detected", {"share": 0.6})
    assert first.status == "taken" and first.job_id is not None
    again = d.handle("a", "drift_detected", {"share": 0.7})
    assert again.status == "suppressed" and "cooling down" in again.reason
    clock.now += timedelta(minutes=31)
    assert d.handle("a", "drift_detected", {}).status == "taken"  # cool-down over
    quota = d.handle("b", "manual", {})
    assert quota.status == "suppressed" and quota.reason.startswith("quota: 2 tuning jobs")
    dup = d.handle("c", "manual", {}, dedupe_key="k1")
    assert dup.status == "suppressed"  # still the quota
    events = [e.type for e in store.list_events(model="a", limit=20)]
    assert events.count("action_taken") == 2 and events.count("action_suppressed") == 1
    assert "drift_detected" in events


def test_notify_actions_are_recorded_not_queued(store: Store) -> None:
    d = Dispatcher(store, build_config({}, env={}))
    outcome = d.handle("a", "srm_detected", {"p": 1e-9})
    assert (outcome.action, outcome.status) == ("notify", "taken")
    assert store.count_active_jobs() == 0


def _evaluation(i: int, alarm: bool | None, status: str = "ok") -> EvaluationRow:
    payload = {} if alarm is None else {"alarm": alarm}
    return EvaluationRow(i, "a", 1, "drift", status, None, T0 + timedelta(minutes=i), payload, T0)


def test_policy_needs_consecutive_alarms_and_respects_cooldown() -> None:
    policy = EventPolicy(
        event="drift_detected", kind="drift", consecutive=2, cooldown=timedelta(hours=1)
    )
    newest_first = [_evaluation(3, True), _evaluation(2, False), _evaluation(1, True)]
    assert not decide(policy, newest_first, last_event_at=None, now=T0).fire
    newest_first = [
        _evaluation(4, True),
        _evaluation(3, None, "insufficient_data"),
        _evaluation(2, True),
    ]
    assert decide(policy, newest_first, last_event_at=None, now=T0).fire
    cooling = decide(policy, newest_first, last_event_at=T0 - timedelta(minutes=10), now=T0)
    assert not cooling.fire and "cooling down" in cooling.reason
    assert decide(policy, newest_first, last_event_at=T0 - timedelta(hours=2), now=T0).fire


def _window(i: int, alarm: bool, first: int, last: int) -> EvaluationRow:
    """A measured evaluation whose window held the requests received from minute
    ``first`` to minute ``last`` (inclusive)."""
    payload = {
        "alarm": alarm,
        "first_request_at": (T0 + timedelta(minutes=first)).isoformat(),
        "last_request_at": (T0 + timedelta(minutes=last)).isoformat(),
    }
    return EvaluationRow(i, "a", 1, "drift", "ok", None, T0 + timedelta(minutes=i), payload, T0)


DRIFT_TWICE = EventPolicy(
    event="drift_detected", kind="drift", consecutive=2, cooldown=timedelta(hours=1)
)


def test_the_same_window_read_twice_is_one_window_of_the_streak() -> None:
    newest_first = [_window(2, True, 0, 10), _window(1, True, 0, 10)]
    decision = decide(DRIFT_TWICE, newest_first, last_event_at=None, now=T0)
    assert not decision.fire and decision.streak == 1


def test_an_overlapping_window_is_passed_over_and_the_next_disjoint_one_counts() -> None:
    # minutes 5-15 and 0-10 share requests; 0-4 ended before 5-15 began
    overlapping = [_window(3, True, 5, 15), _window(2, True, 0, 10)]
    assert decide(DRIFT_TWICE, overlapping, last_event_at=None, now=T0).streak == 1
    disjoint = [_window(3, True, 5, 15), _window(2, True, 0, 10), _window(1, True, 0, 4)]
    decision = decide(DRIFT_TWICE, disjoint, last_event_at=None, now=T0)
    assert decision.fire and decision.streak == 2


def test_an_overlapping_window_that_did_not_alarm_still_ends_the_streak() -> None:
    newest_first = [_window(3, True, 5, 15), _window(2, False, 0, 10), _window(1, True, 0, 4)]
    decision = decide(DRIFT_TWICE, newest_first, last_event_at=None, now=T0)
    assert not decision.fire and decision.streak == 1


def test_evaluations_without_a_recorded_window_count_one_each() -> None:
    """Rows stored before windows were recorded in the payload keep the old rule."""
    newest_first = [_evaluation(2, True), _evaluation(1, True)]
    assert decide(DRIFT_TWICE, newest_first, last_event_at=None, now=T0).fire


def test_the_policy_reads_the_history_only_as_far_as_it_decides() -> None:
    read: list[int] = []

    def history() -> Iterator[EvaluationRow]:
        for i in range(10, 0, -1):
            read.append(i)
            yield _window(i, i != 8, 10 * i, 10 * i + 9)

    assert decide(DRIFT_TWICE, history(), last_event_at=None, now=T0).fire
    assert read == [10, 9]


def test_simultaneous_triggers_in_a_cool_down_queue_one_job(store: Store) -> None:
    config = build_config(
        {
            "tuning": {"max_concurrent_jobs": 10},
            "models": [
                {
                    "name": "a",
                    "task": "binary",
                    "triggers": [{"on": "drift_detected", "do": "retune", "cooldown_minutes": 30}],
                }
            ],
        },
        env={},
    )
    d = Dispatcher(store, config)
    start = threading.Barrier(6)
    outcomes = []

    def run() -> None:
        start.wait()
        outcomes.append(d.handle("a", "drift_detected", {}).status)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["suppressed"] * 5 + ["taken"]
    assert len(store.list_jobs(model="a")) == 1
