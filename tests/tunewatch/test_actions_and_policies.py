"""Triggers to actions (cool-downs, quota, reasons) and event policies (hysteresis)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import update

from monitor import ServingMetrics
from tunewatch._actions import Dispatcher
from tunewatch._config import EvaluationConfig, build_config
from tunewatch._event_counts import EventCounts
from tunewatch._policies import LOOKBACK_RUNS, EventPolicy, decide, evaluation_policies
from tunewatch.store import EvaluationRow, Store, _jobs
from tunewatch.store._schema import jobs

T0 = datetime(2026, 11, 28, 12, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(f"sqlite:///{tmp_path}/t.db")
    for name in ("a", "b", "c"):
        s.ensure_model(name=name, task="binary", feature_names=["x"])
    return s


def test_cooldown_quota_and_dedupe_suppress_with_reasons(store: Store) -> None:
    config = build_config(
        {
            "tuning": {"max_concurrent_jobs": 1},
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
    first = d.handle("a", "drift_detected", {"share": 0.6})
    assert first.status == "taken" and first.job_id is not None
    active = d.handle("a", "drift_detected", {"share": 0.65})
    assert (active.status, active.job_id) == ("duplicate", first.job_id)  # still queued
    store.finish_job(first.job_id, status="succeeded", result={})
    again = d.handle("a", "drift_detected", {"share": 0.7})
    assert again.status == "suppressed" and "cooling down" in again.reason
    _age_jobs(store, "a", timedelta(minutes=31))
    assert d.handle("a", "drift_detected", {}).status == "taken"  # cool-down over
    quota = d.handle("b", "manual", {})
    assert quota.status == "suppressed" and quota.reason.startswith("quota: 1 tuning jobs")
    dup = d.handle("c", "manual", {}, dedupe_key="k1")
    assert dup.status == "suppressed"  # still the quota
    events = [e.type for e in store.list_events(model="a", limit=20)]
    assert events.count("action_taken") == 2 and events.count("action_suppressed") == 1
    assert events.count("action_duplicate") == 1
    assert "drift_detected" in events


def _age_jobs(store: Store, model: str, by: timedelta) -> None:
    """Move ``model``'s jobs ``by`` into the past, as if that long had passed since."""
    for job in store.list_jobs(model=model):
        with store.engine.begin() as conn:
            conn.execute(
                update(jobs).where(jobs.c.id == job.id).values(created_at=job.created_at - by)
            )


def _cooling(store: Store, minutes: float) -> Dispatcher:
    trigger = {"on": "drift_detected", "do": "retune", "cooldown_minutes": minutes}
    model = {"name": "a", "task": "binary", "triggers": [trigger]}
    raw = {"tuning": {"max_concurrent_jobs": 10}, "models": [model]}
    return Dispatcher(store, build_config(raw, env={}))


def test_a_trigger_s_cool_down_is_timed_by_the_database_s_clock_not_the_hosts(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job's queue time was stamped by the clock of the host that queued it and compared
    with the deciding host's ``now - cool-down``: with hosts 10 minutes apart, a 5-minute
    cool-down was over the moment a slow host queued a job, and held 15 minutes after a
    fast one did."""
    store = Store.open(store_url)
    try:
        store.ensure_model(name="a", task="binary", feature_names=["x"])
        d = _cooling(store, 5)
        for skew in (timedelta(minutes=-10), timedelta(minutes=10)):
            # the queueing replica's clock, as the store read it
            monkeypatch.setattr(_jobs, "utcnow", lambda skew=skew: datetime.now(UTC) + skew)
            taken = d.handle("a", "drift_detected", {})
            assert taken.status == "taken" and taken.job_id is not None
            store.finish_job(taken.job_id, status="succeeded", result={})
            monkeypatch.undo()  # the deciding host keeps time
            again = d.handle("a", "drift_detected", {})
            assert again.status == "suppressed" and "cooling down" in again.reason, skew
            _age_jobs(store, "a", timedelta(minutes=6))  # the cool-down is over
        assert d.handle("a", "drift_detected", {}).status == "taken"
        assert len(store.list_jobs(model="a")) == 3
    finally:
        store.close()


def test_notify_actions_are_recorded_counted_for_the_alert_and_not_queued(store: Store) -> None:
    """``do: notify`` reached nobody: the event was recorded and counted with the others,
    and no shipped rule read it. Each is counted in ``tunewatch_notifications_total``
    (exported at 0 from the start, so the first one's increase alerts), which the shipped
    rule ``TunewatchNotification`` reads: from its stored action event, by the scheduler's
    leader (:class:`EventCounts`), not by the dispatcher that decided it."""
    registry = CollectorRegistry()
    raw = {"models": [{"name": "a", "task": "binary", "features": [{"name": "x"}]}]}
    metrics = ServingMetrics(registry=registry)
    d = Dispatcher(store, build_config(raw, env={}), metrics=metrics)
    counts = EventCounts(store, metrics)

    def notices(event: str) -> float | None:
        labels = {"model": "a", "event": event}
        return registry.get_sample_value("tunewatch_notifications_total", labels)

    assert notices("srm_detected") == notices("challenger_worse") == 0
    outcome = d.handle("a", "srm_detected", {"p": 1e-9})
    assert (outcome.action, outcome.status) == ("notify", "taken")
    assert "TunewatchNotification" in outcome.reason
    assert store.count_active_jobs() == 0
    assert notices("srm_detected") == 0  # counted by the leader, from the store
    counts.poll()
    assert notices("srm_detected") == 1
    assert notices("challenger_worse") == 0
    d.handle("a", "drift_detected", {})  # a retune: no notice
    counts.poll()
    assert notices("drift_detected") == 0


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


def _label_drift(i: int, first: int, last: int, labels: tuple[int, int] | None) -> EvaluationRow:
    """A drift verdict over minutes ``first``-``last`` whose alarm rests on the labels of
    its label window (minutes ``labels``), when given."""
    row = _window(i, True, first, last)
    if labels is not None:
        row.payload["label_first_request_at"] = (T0 + timedelta(minutes=labels[0])).isoformat()
        row.payload["label_last_request_at"] = (T0 + timedelta(minutes=labels[1])).isoformat()
    return row


def test_verdicts_whose_drifted_labels_share_requests_are_one_window() -> None:
    """The label is tested on a window of its own, a maturity behind: traffic that grew
    renews the features' window faster than the labels', and one drifted label window
    read by two runs was two alarming windows."""
    same_labels = [_label_drift(2, 20, 29, (0, 9)), _label_drift(1, 10, 19, (0, 9))]
    decision = decide(DRIFT_TWICE, same_labels, last_event_at=None, now=T0)
    assert not decision.fire and decision.streak == 1
    new_labels = [_label_drift(2, 20, 29, (5, 9)), _label_drift(1, 10, 19, (0, 4))]
    assert decide(DRIFT_TWICE, new_labels, last_event_at=None, now=T0).fire
    # a verdict whose alarm does not rest on the labels is told apart by its window
    one_without = [_label_drift(2, 20, 29, None), _label_drift(1, 10, 19, (0, 9))]
    assert decide(DRIFT_TWICE, one_without, last_event_at=None, now=T0).fire


def test_a_streak_does_not_reach_past_the_policy_s_look_back() -> None:
    """A quiet model stores an insufficient_data verdict every run: the policy paged back
    through the whole quiet period at every run, for every policy, and joined an alarm
    from weeks before it with today's."""
    read: list[int] = []

    def history(quiet: int) -> Iterator[EvaluationRow]:
        n = quiet + 2
        read.clear()
        for i in range(n, 0, -1):
            read.append(i)
            if i == n:
                yield _window(i, True, 10_000, 10_009)
            elif i == 1:
                yield _window(i, True, 0, 9)  # shares no request with the newest
            else:
                yield _evaluation(i, None, "insufficient_data")

    assert DRIFT_TWICE.lookback == 2 * LOOKBACK_RUNS
    within = decide(DRIFT_TWICE, history(DRIFT_TWICE.lookback - 2), last_event_at=None, now=T0)
    assert within.fire and len(read) == DRIFT_TWICE.lookback
    beyond = decide(DRIFT_TWICE, history(10 * DRIFT_TWICE.lookback), last_event_at=None, now=T0)
    assert not beyond.fire and beyond.streak == 1
    assert len(read) == DRIFT_TWICE.lookback  # not the whole history
    assert f"newest {DRIFT_TWICE.lookback} drift verdicts" in beyond.reason
    assert not beyond.outgrown  # the look-back ended on a run that could not measure


def test_a_window_still_read_when_the_look_back_ends_is_flagged() -> None:
    """A window_rows window that takes longer than the look-back to fill with new
    requests is read again by every run the policy reads: its streak cannot complete,
    which the decision says so that it can be logged."""
    newest_first = [_window(i, True, 0, 10_000 + i) for i in range(500, 0, -1)]
    decision = decide(DRIFT_TWICE, iter(newest_first), last_event_at=None, now=T0)
    assert not decision.fire and decision.streak == 1 and decision.outgrown


def test_a_long_window_looks_back_over_the_runs_it_takes_to_renew() -> None:
    """A window_s (decay: decay.window_s) window longer than the interval is renewed
    only every so many runs: the look-back adds them, so a day-long window evaluated
    every five minutes can still complete a streak."""
    ev = EvaluationConfig(window_rows=None, window_s=86_400)  # every 300 s
    policies = {p.kind: p for p in evaluation_policies(ev)}
    per_day = 86_400 // 300
    assert policies["drift"].lookback == 2 * LOOKBACK_RUNS + per_day
    assert policies["labels"].lookback == LOOKBACK_RUNS  # one window: no renewal to wait for
    decay_twice = EvaluationConfig(decay={"consecutive": 2})  # decay.window_s: a day
    [decay] = [p for p in evaluation_policies(decay_twice) if p.kind == "decay"]
    assert decay.lookback == 2 * LOOKBACK_RUNS + per_day
    by_rows = {p.kind: p for p in evaluation_policies(EvaluationConfig())}  # window_rows
    assert by_rows["drift"].lookback == 2 * LOOKBACK_RUNS
    # the window counted before the newest lies a day of runs back
    newest_first = [_window(10_000, True, 1500, 2999)]
    newest_first += [_window(10_000 - i, True, 1400, 2999 - i) for i in range(1, per_day + 5)]
    newest_first += [_window(1, True, 0, 1499)]
    assert decide(policies["drift"], iter(newest_first), last_event_at=None, now=T0).fire


def test_a_fired_streak_does_not_fire_again_after_runs_that_could_not_measure() -> None:
    """A quiet spell (window_s, no traffic) stores insufficient_data verdicts, which do not
    break a streak: once the cool-down ran out, the two windows that had fired the event
    fired it again, and queued another retune, with no new evidence."""
    streak = [_window(10, True, 5, 9), _window(5, True, 0, 4)]
    assert decide(DRIFT_TWICE, streak, last_event_at=None, now=T0).fire
    fired = T0 + timedelta(minutes=10)
    quiet = [_evaluation(10 + 5 * k, None, "insufficient_data") for k in range(84, 0, -1)]
    later = T0 + timedelta(hours=7)
    decision = decide(DRIFT_TWICE, quiet + streak, last_event_at=fired, now=later)
    assert not decision.fire and "newest drift verdict" in decision.reason
    assert not decide(DRIFT_TWICE, quiet + streak, last_event_at=None, now=later).fire


def test_windows_judged_before_the_last_event_do_not_raise_it_again() -> None:
    """A window_rows window without new traffic is read again at every run and alarms
    each time: past the cool-down, the streak that had fired fired again on the same
    requests. Only windows of requests received after the event count towards the next."""
    fired = T0 + timedelta(minutes=10)
    reread = [_window(i, True, 5, 9) for i in range(500, 10, -50)] + [
        _window(10, True, 5, 9),
        _window(5, True, 0, 4),
    ]
    later = T0 + timedelta(hours=7)
    decision = decide(DRIFT_TWICE, reread, last_event_at=fired, now=later)
    assert not decision.fire and decision.streak == 2  # the alarm still holds
    assert "since the last event" in decision.reason
    one_new = [_window(510, True, 20, 29), *reread]  # shares no request with 5-9
    assert not decide(DRIFT_TWICE, one_new, last_event_at=fired, now=later).fire
    two_new = [_window(520, True, 30, 39), *one_new]
    assert decide(DRIFT_TWICE, two_new, last_event_at=fired, now=later).fire
    # verdicts that did not record their requests count from their run's time
    old_rows = [_evaluation(9, True), _evaluation(8, True)]
    assert not decide(DRIFT_TWICE, old_rows, last_event_at=fired, now=later).fire
    new_rows = [_evaluation(12, True), _evaluation(11, True)]
    assert decide(DRIFT_TWICE, new_rows, last_event_at=fired, now=later).fire


def test_a_switched_off_kind_raises_no_event() -> None:
    """With drift switched off nothing new is stored, and the last stored streak re-fired
    drift_detected at every expiry of the cool-down, for ever."""
    off = EvaluationConfig(
        drift={"enabled": False}, decay={"enabled": False}, estimate={"enabled": False}
    )
    policies = {p.kind: p for p in evaluation_policies(off)}
    assert not policies["drift"].enabled and not policies["decay"].enabled
    assert not policies["estimate"].enabled and policies["labels"].enabled
    streak = [_window(10, True, 5, 9), _window(5, True, 0, 4)]
    decision = decide(policies["drift"], streak, last_event_at=None, now=T0)
    assert not decision.fire and "switched off" in decision.reason
    assert all(p.enabled for p in evaluation_policies(EvaluationConfig()))


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
    # the first job is still queued: the others are its duplicates, not cooling down
    assert sorted(outcomes) == ["duplicate"] * 5 + ["taken"]
    assert len(store.list_jobs(model="a")) == 1


def test_a_manual_retune_is_audited_with_its_requester_reason_and_outcome(store: Store) -> None:
    """Who asked for a retune, and why, was only in the events, which are not the
    hash-chained audit log a regulated model's reviewers read."""
    config = build_config({"tuning": {"max_concurrent_jobs": 1}}, env={})
    d = Dispatcher(store, config)
    taken = d.handle("a", "manual", {"reason": "new labels from Q3"}, actor="alice")
    quota = d.handle("b", "manual", {"reason": "try again"}, actor="bob")
    d.handle("c", "drift_detected", {})  # a policy's retune: in the events only
    entries = store.audit_log(limit=10, action="request_retune")
    assert [(e.actor, e.target) for e in entries] == [("bob", "b"), ("alice", "a")]
    assert entries[1].details == {
        "reason": "new labels from Q3",
        "status": "taken",
        "job": taken.job_id,
    }
    assert entries[0].details["status"] == "suppressed" and entries[0].details["job"] is None
    assert entries[0].details["why"] == quota.reason
    assert store.verify_audit() is None
