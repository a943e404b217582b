"""Scheduled evaluation on a real store: drift events with hysteresis, degenerate windows,
leader election, and a failing evaluation that never stops the scheduler."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shadow import OnnxModel
from tests.tunewatch.conftest import Clock, champion_answered, feed
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import NotFoundError, StoreUnavailableError
from tunewatch._example import ExampleModel, example_data
from tunewatch._policies import evaluation_policies
from tunewatch._reference import Reference
from tunewatch._scheduler import PerModelJob, Scheduler
from tunewatch._version_metadata import VersionMetadata
from tunewatch.store import EvaluationRow, Event, LabelItem, RequestRecord
from tunewatch.store._schema import evaluations, leases

MODEL = "credit"
WINDOW = 600  # rows per evaluated window (documented constant of the golden test)
# request times lie in the recent past: labels are stamped with the real arrival time
T0 = datetime.now(UTC) - timedelta(hours=6)


def _champion_daemon(
    trained: list[ExampleModel],
    tmp_path: Path,
    evaluation: dict[str, object],
    *,
    model: dict[str, object] | None = None,
    tuning: dict[str, object] | None = None,
) -> Daemon:
    """A daemon whose model has this ``evaluation`` config (and the rest of ``model``) and
    the example champion with its reference."""
    config = build_config(
        {
            "data_dir": str(tmp_path),
            "scheduler": {"enabled": False},
            "tuning": tuning or {},
            "models": [
                {"name": MODEL, "task": "binary", "evaluation": evaluation, **(model or {})}
            ],
        },
        env={},
    )
    d = Daemon(config, env={})
    d.registry.register(
        MODEL,
        trained[0].onnx,
        trained[0].metadata,
        actor="test",
        stage="champion",
        reference=trained[0].reference,
    )
    return d


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    d = _champion_daemon(
        trained,
        tmp_path,
        {
            "window_rows": WINDOW,
            "drift": {"consecutive": 2, "cooldown_minutes": 600},
            "decay": {"window_s": 3600, "maturity_s": 0, "horizon_windows": 24},
        },
    )
    yield d
    d.close()


def run_stream(d: Daemon, *, change_at: int | None, windows: int = 8) -> list[bool]:
    clock = Clock()
    d.evaluator.clock = clock
    alarms = []
    for w in range(windows):
        shifted = change_at is not None and w >= change_at
        feed(d, clock, w * WINDOW, WINDOW, shift=1.0 if shifted else 0.0, seed=100 + w)
        rows = {r.kind: r for r in d.evaluator.evaluate(MODEL)}
        alarms.append(bool(rows["drift"].payload["alarm"]))
    return alarms


def test_drift_event_fires_at_the_second_drifted_window_and_only_once(daemon: Daemon) -> None:
    alarms = run_stream(daemon, change_at=4)
    assert alarms == [False] * 4 + [True] * 4
    events = daemon.store.list_events(model=MODEL, type="drift_detected", limit=10)
    assert len(events) == 1  # window 5 (2 consecutive), then the cool-down holds
    evaluation = next(
        e
        for e in daemon.store.list_evaluations(MODEL, kind="drift", limit=10)
        if e.id == events[0].payload["evaluation"]
    )
    drift_windows = daemon.store.list_evaluations(MODEL, kind="drift", limit=10)
    assert evaluation.id == sorted(e.id for e in drift_windows)[5]
    actions = daemon.store.list_events(model=MODEL, type="action_taken", limit=5)
    assert actions and actions[0].payload["action"] == "retune"
    assert daemon.store.count_active_jobs() == 1


def test_a_drift_retune_the_quota_suppressed_is_retried_at_the_next_alarming_window(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The policy's cool-down counted from the drift event, whatever became of its action:
    a retune the quota suppressed silenced the drift for the whole cool-down."""
    d = _champion_daemon(
        trained,
        tmp_path,
        {"window_rows": WINDOW, "drift": {"consecutive": 2, "cooldown_minutes": 600}},
        model={"triggers": [{"on": "drift_detected", "do": "retune", "cooldown_minutes": 0}]},
        tuning={"max_concurrent_jobs": 1},
    )
    try:
        # another model's (while one of MODEL's is active, its drift is that job's duplicate)
        d.store.ensure_model(name="other", task="binary", feature_names=["x"])
        blocker, _ = d.store.create_job(
            model="other", kind="retune", trigger={"event": "manual"}, spec={}
        )
        clock = Clock()
        d.evaluator.clock = clock
        for w in range(8):
            if w == 6:  # the quota frees after the first drift event (window 5)
                d.store.finish_job(blocker.id, status="succeeded", result={})
            feed(d, clock, w * WINDOW, WINDOW, shift=1.0 if w >= 4 else 0.0, seed=100 + w)
            d.evaluator.evaluate(MODEL)
        actions = [
            (e.type, e.payload["trigger"])
            for e in reversed(d.store.list_events(model=MODEL, limit=50))
            if e.type.startswith("action_")
        ]
        assert actions == [  # windows 5 (the quota is full) and 6, then the cool-down
            ("action_suppressed", "drift_detected"),
            ("action_taken", "drift_detected"),
        ]
        [job] = [
            j for j in d.store.list_jobs(model=MODEL) if j.trigger["event"] == "drift_detected"
        ]
        assert job.status == "queued"
    finally:
        d.close()


def _drift_events(d: Daemon) -> list[str]:
    return [
        e.type
        for e in reversed(d.store.list_events(model=MODEL, limit=100))
        if e.type == "drift_detected" or e.type.startswith("action_")
    ]


def _drifting(d: Daemon, windows: int = 8) -> None:
    clock = Clock()
    d.evaluator.clock = clock
    for w in range(windows):
        feed(d, clock, w * WINDOW, WINDOW, shift=1.0 if w >= 4 else 0.0, seed=100 + w)
        d.evaluator.evaluate(MODEL)


def test_a_drifted_window_evaluated_again_without_new_traffic_is_not_a_second_window(
    daemon: Daemon,
) -> None:
    """Each run read the newest rows again and counted its stored verdict as a new window:
    one burst of drifted traffic, evaluated at the next scheduled run (or by a second
    POST /evaluate) with no request between, met `consecutive: 2` and queued a retune."""
    clock = Clock()
    daemon.evaluator.clock = clock
    feed(daemon, clock, 0, WINDOW, shift=0.0, seed=100)
    daemon.evaluator.evaluate(MODEL)
    feed(daemon, clock, WINDOW, WINDOW, shift=1.0, seed=101)  # one burst, then silence
    verdicts = []
    for _ in range(3):
        verdicts.append({r.kind: r for r in daemon.evaluator.evaluate(MODEL)}["drift"])
        clock.now += timedelta(minutes=5)  # the next scheduled run
    assert all(v.payload["alarm"] for v in verdicts)
    assert daemon.store.list_events(model=MODEL, type="drift_detected") == []
    assert _value(daemon, "tunewatch_alarm", event="drift_detected") == 0.0
    # a window of requests that came after the burst is the second drifted window
    feed(daemon, clock, 2 * WINDOW, WINDOW, shift=1.0, seed=102)
    daemon.evaluator.evaluate(MODEL)
    assert len(daemon.store.list_events(model=MODEL, type="drift_detected")) == 1
    assert _value(daemon, "tunewatch_alarm", event="drift_detected") == 1.0


def test_a_streak_is_found_behind_many_runs_whose_windows_overlap(daemon: Daemon) -> None:
    """Sparse traffic: a window slides over the drifted one a few requests a run, so
    the window counted before the newest lies behind more runs than the policy's first
    page of history holds."""
    clock = Clock()
    daemon.evaluator.clock = clock
    feed(daemon, clock, 0, WINDOW, shift=1.0, seed=101)
    first = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}["drift"]
    sliding = {  # each shares requests with the first window and with the newest
        **first.payload,
        "last_request_at": (clock.now + timedelta(days=1)).isoformat(),
    }
    for i in range(40):
        daemon.store.add_evaluation(
            model=MODEL,
            version=first.version,
            kind="drift",
            status="ok",
            window_start=first.window_start,
            window_end=first.window_end + timedelta(minutes=i + 1),
            payload=sliding,
        )
    clock.now += timedelta(hours=1)
    feed(daemon, clock, WINDOW, WINDOW, shift=1.0, seed=102)
    daemon.evaluator.evaluate(MODEL)
    assert len(daemon.store.list_events(model=MODEL, type="drift_detected")) == 1


def test_a_window_read_again_for_longer_than_the_look_back_is_logged_once(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    """A window_rows window that a trickle of traffic renews more slowly than the policy's
    look-back reaches cannot complete a streak: the operator is told, not left with an
    event that never fires."""
    clock = Clock()
    daemon.evaluator.clock = clock
    feed(daemon, clock, 0, WINDOW, shift=1.0, seed=101)
    first = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}["drift"]
    [policy] = [
        p for p in evaluation_policies(daemon.config.models[0].evaluation) if p.kind == "drift"
    ]
    sliding = {  # each shares requests with the first window and with the newest
        **first.payload,
        "last_request_at": (clock.now + timedelta(days=1)).isoformat(),
    }
    for i in range(policy.lookback):
        daemon.store.add_evaluation(
            model=MODEL,
            version=first.version,
            kind="drift",
            status="ok",
            window_start=first.window_start,
            window_end=first.window_end + timedelta(minutes=i + 1),
            payload=sliding,
        )
    clock.now += timedelta(days=1)
    with caplog.at_level(logging.WARNING, logger="tunewatch._evaluation_events"):
        for run in range(2):
            feed(daemon, clock, WINDOW + 10 * run, 10, shift=1.0, seed=102 + run)
            assert {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}["drift"].payload["alarm"]
    assert daemon.store.list_events(model=MODEL, type="drift_detected") == []
    [warning] = [r for r in caplog.records if "renew more slowly" in r.getMessage()]
    assert "model=credit event=drift_detected" in warning.getMessage()


def test_a_quiet_period_longer_than_the_look_back_ends_the_streak_and_is_not_read(
    trained: list[ExampleModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model without traffic stores insufficient_data verdicts every run: each run
    paged back through the whole quiet period (one read 6038 rows in 34 queries), for
    every policy, and a drifted window after weeks of silence joined the one before it
    into a streak."""
    d = _champion_daemon(
        trained, tmp_path, {"window_rows": None, "window_s": 600, "drift": {"consecutive": 2}}
    )
    try:
        clock = Clock()
        d.evaluator.clock = clock
        feed(d, clock, 0, 600, shift=1.0, seed=101)
        first = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
        assert first.payload["alarm"]
        [policy] = [
            p for p in evaluation_policies(d.config.models[0].evaluation) if p.kind == "drift"
        ]
        quiet = policy.lookback + 100  # runs that found no request
        for i in range(quiet):
            d.store.add_evaluation(
                model=MODEL,
                version=first.version,
                kind="drift",
                status="insufficient_data",
                window_start=None,
                window_end=first.window_end + timedelta(minutes=5 * (i + 1)),
                payload={"alarm": False, "reason": "no requests in the window"},
            )
        clock.now += timedelta(minutes=5 * (quiet + 1))
        read: dict[str | None, int] = {}
        listed = d.store.recent_evaluations  # what the policies read: in append order

        def counting(*args: Any, **kwargs: Any) -> list[EvaluationRow]:
            rows = listed(*args, **kwargs)
            read[kwargs.get("kind")] = read.get(kwargs.get("kind"), 0) + len(rows)
            return rows

        monkeypatch.setattr(d.store, "recent_evaluations", counting)
        feed(d, clock, 600, 600, shift=1.0, seed=102)  # drifted again, weeks later
        assert {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"].payload["alarm"]
        assert d.store.list_events(model=MODEL, type="drift_detected") == []
        assert read["drift"] <= policy.lookback
    finally:
        d.close()


def test_a_window_longer_than_the_interval_counts_once_it_has_moved_past_the_last(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A 20-minute `window_s` evaluated every 5 minutes: every run's window shares
    requests with the three before it, so the streak completes at the first run whose
    window starts after the first drifted window counted ended."""
    d = _champion_daemon(
        trained,
        tmp_path,
        {"window_rows": None, "window_s": 1200, "drift": {"consecutive": 2}},
    )
    try:
        clock = Clock()
        d.evaluator.clock = clock
        alarms, fired = [], []
        for run in range(8):  # 300 requests a run, one a second: drifted from the start
            feed(d, clock, run * 300, 300, shift=1.0, seed=400 + run)
            rows = {r.kind: r for r in d.evaluator.evaluate(MODEL)}
            alarms.append(bool(rows["drift"].payload["alarm"]))
            fired.append(len(d.store.list_events(model=MODEL, type="drift_detected")))
        assert alarms == [True] * 8
        # run 0's window is minutes 0-5; run 4's (minutes 5-20 of 300 s runs) is the
        # first to start after it ended
        assert fired == [0, 0, 0, 0, 1, 1, 1, 1]
    finally:
        d.close()


def test_a_policy_without_a_trigger_still_cools_down(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """With the cool-down counted from settled actions only, a policy whose event has no
    trigger (no action event at all) raised its event at every alarming run."""
    d = _champion_daemon(
        trained,
        tmp_path,
        {"window_rows": WINDOW, "drift": {"consecutive": 2, "cooldown_minutes": 600}},
        model={"triggers": [{"on": "alert_received", "do": "retune"}]},
    )
    try:
        _drifting(d)
        assert _drift_events(d) == ["drift_detected"]
    finally:
        d.close()


def test_a_retune_the_trigger_s_cool_down_suppressed_settles_the_policy(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The model was just retuned (here by hand): the policy's retune is suppressed by the
    trigger's cool-down, and the policy's own cool-down then holds. Retrying it at every
    run raised the event and a suppression each time, then queued a second job inside the
    policy's cool-down."""
    d = _champion_daemon(
        trained,
        tmp_path,
        {"window_rows": WINDOW, "drift": {"consecutive": 2, "cooldown_minutes": 600}},
        model={"triggers": [{"on": "drift_detected", "do": "retune", "cooldown_minutes": 30}]},
    )
    try:
        job, _ = d.store.create_job(
            model=MODEL, kind="retune", trigger={"event": "manual"}, spec={}
        )
        d.store.finish_job(job.id, status="succeeded", result={})
        _drifting(d)
        assert _drift_events(d) == ["drift_detected", "action_suppressed"]
    finally:
        d.close()


def test_a_retune_whose_action_event_was_lost_still_starts_the_cool_down(
    trained: list[ExampleModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job and its `action_taken` are written in two transactions: with the second
    lost (a crash, the store failing between them) the next alarming run queued another
    job inside the policy's cool-down."""
    d = _champion_daemon(
        trained,
        tmp_path,
        {"window_rows": WINDOW, "drift": {"consecutive": 2, "cooldown_minutes": 600}},
        model={"triggers": [{"on": "drift_detected", "do": "retune", "cooldown_minutes": 0}]},
    )
    try:
        monkeypatch.setattr(d.dispatcher, "record", lambda *args, **kwargs: None)
        _drifting(d)
        drift_jobs = [
            j for j in d.store.list_jobs(model=MODEL) if j.trigger["event"] == "drift_detected"
        ]
        assert len(drift_jobs) == 1
    finally:
        d.close()


def test_a_fired_streak_is_not_raised_again_by_runs_that_measured_nothing(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """With `window_s` and traffic stopping, every run stores insufficient_data, which
    does not break a streak: once the cool-down ran out, the two windows that had fired
    drift_detected fired it again, and queued a second retune, on no new request."""
    d = _champion_daemon(
        trained,
        tmp_path,
        {
            "window_rows": None,
            "window_s": 600,
            "drift": {"consecutive": 2, "cooldown_minutes": 360},
        },
        model={"triggers": [{"on": "drift_detected", "do": "retune", "cooldown_minutes": 0}]},
    )
    try:
        clock = Clock()
        d.evaluator.clock = clock
        for w in range(2):
            feed(d, clock, w * 600, 600, shift=1.0, seed=300 + w)
            d.evaluator.evaluate(MODEL)
        assert _drift_events(d) == ["drift_detected", "action_taken"]
        for hours in (1, 7, 13):  # the event's time is the store's: past it, and past 6 h
            clock.now = datetime.now(UTC) + timedelta(hours=hours)
            assert {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"].status == (
                "insufficient_data"
            )
        assert _drift_events(d) == ["drift_detected", "action_taken"]
        assert d.store.count_active_jobs() == 1
    finally:
        d.close()


def test_a_retune_whose_job_could_not_be_queued_is_retried_at_the_next_alarming_window(
    trained: list[ExampleModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drift event is committed before its job is queued: when the job's insert failed
    (the store briefly unavailable) there was no job and no action event, and the next
    runs took the event for a settled one and cooled down for the policy's whole cool-down
    (10 h here): the retune was lost."""
    d = _champion_daemon(
        trained,
        tmp_path,
        {"window_rows": WINDOW, "drift": {"consecutive": 2, "cooldown_minutes": 600}},
        model={"triggers": [{"on": "drift_detected", "do": "retune", "cooldown_minutes": 0}]},
    )
    create_job = d.store.create_job
    failed: list[str] = []

    def failing_once(**kwargs: Any) -> Any:
        if not failed:
            failed.append(kwargs["trigger"]["event"])
            raise StoreUnavailableError("store create_job: database unavailable: test")
        return create_job(**kwargs)

    try:
        monkeypatch.setattr(d.store, "create_job", failing_once)
        clock = Clock()
        d.evaluator.clock = clock
        for w in range(8):
            feed(d, clock, w * WINDOW, WINDOW, shift=1.0 if w >= 4 else 0.0, seed=100 + w)
            if w == 5:  # the first drift event: its job's insert fails
                with pytest.raises(StoreUnavailableError):
                    d.evaluator.evaluate(MODEL)
            else:
                d.evaluator.evaluate(MODEL)
        assert failed == ["drift_detected"]
        # window 6 raises the event again and queues its job; then the cool-down holds
        assert _drift_events(d) == ["drift_detected", "drift_detected", "action_taken"]
        [job] = [
            j for j in d.store.list_jobs(model=MODEL) if j.trigger["event"] == "drift_detected"
        ]
        assert job.status == "queued"
    finally:
        d.close()


def test_a_switched_off_drift_check_raises_no_event_after_its_cool_down(daemon: Daemon) -> None:
    """Switched off, drift stores no verdict: the last stored streak fired drift_detected
    again at every expiry of the cool-down while tunewatch_alarm showed 0."""
    _drifting(daemon)
    assert len(daemon.store.list_events(model=MODEL, type="drift_detected")) == 1
    daemon.config.models[0].evaluation.drift.__dict__["enabled"] = False
    clock = daemon.evaluator.clock
    assert isinstance(clock, Clock)
    for run in range(3):  # 11 h apart: past the 600-minute cool-down each time
        clock.now = datetime.now(UTC) + timedelta(hours=11 * (run + 1))
        feed(daemon, clock, (10 + run) * WINDOW, WINDOW, shift=0.0, seed=500 + run)
        assert "drift" not in {r.kind for r in daemon.evaluator.evaluate(MODEL)}
    assert len(daemon.store.list_events(model=MODEL, type="drift_detected")) == 1
    assert _value(daemon, "tunewatch_alarm", event="drift_detected") == 0.0


def test_two_evaluations_of_one_model_at_once_raise_its_event_once(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scheduled run and a POST /evaluate of the same model, running at once, both
    decided from the history before either's event and both raised drift_detected (and
    its notices). The barrier holds each run where it reads the policy's last event until
    the other arrives there too; one run at a time, the first waits out its timeout."""
    clock = Clock()
    daemon.evaluator.clock = clock
    feed(daemon, clock, 0, WINDOW, shift=1.0, seed=101)
    daemon.evaluator.evaluate(MODEL)
    feed(daemon, clock, WINDOW, WINDOW, shift=1.0, seed=102)
    barrier = threading.Barrier(2, timeout=2.0)
    listed = daemon.store.list_events

    def meeting(*args: Any, **kwargs: Any) -> list[Event]:
        events = listed(*args, **kwargs)
        if kwargs.get("type") == "drift_detected":
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()
        return events

    monkeypatch.setattr(daemon.store, "list_events", meeting)
    runs = [threading.Thread(target=daemon.evaluator.evaluate, args=(MODEL,)) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    monkeypatch.undo()
    assert len(daemon.store.list_events(model=MODEL, type="drift_detected")) == 1
    assert len(daemon.store.list_evaluations(MODEL, kind="drift", limit=10)) == 3


def test_stationary_stream_never_alarms(daemon: Daemon) -> None:
    assert run_stream(daemon, change_at=None) == [False] * 8
    assert daemon.store.list_events(model=MODEL, type="drift_detected", limit=1) == []


def test_estimate_labels_decay_and_telemetry_are_stored_and_exported(daemon: Daemon) -> None:
    run_stream(daemon, change_at=None, windows=3)
    kinds = {e.kind: e for e in daemon.store.list_evaluations(MODEL, limit=5)}
    estimate = kinds["estimate"].payload
    # wiring, not CBPE's accuracy (monitor's tests pin that on 2k-row windows): with no
    # drift the estimate sits at the reference accuracy; the realised value is beside it
    assert abs(estimate["estimated"] - estimate["reference"]) < 0.02
    assert estimate["ci"][0] < estimate["estimated"] < estimate["ci"][1]
    assert estimate["n_labelled"] == WINDOW and 0.6 < estimate["realised"] < 0.85
    assert not estimate["alarm"]
    assert kinds["labels"].payload["coverage"] == 1.0
    assert kinds["telemetry"].payload["versions"]["1"]["n"] > 0
    assert kinds["decay"].status in {"ok", "insufficient_data"}
    text = daemon.metrics.exposition().decode()
    for metric in (
        "tunewatch_drift_share",
        "tunewatch_objective_estimated",
        "tunewatch_label_coverage",
        "tunewatch_version_latency_p99_seconds",
    ):
        assert any(
            line.startswith(metric + "{") and 'model="credit"' in line for line in text.splitlines()
        ), metric


DAY = 86_400.0


def test_a_window_whose_labels_never_came_raises_label_delay_high(daemon: Daemon) -> None:
    """The median delay was taken over the rows whose label had arrived: with none
    arrived there was no figure and no alarm, however old the requests."""
    twenty_days_ago = Clock(datetime.now(UTC) - timedelta(days=20))
    feed(daemon, twenty_days_ago, 0, WINDOW, shift=0.0, seed=1, labels=False)
    daemon.evaluator.clock = lambda: datetime.now(UTC)
    labels = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}["labels"].payload
    assert labels["alarm"] and labels["median_delay_s"] > 19 * DAY
    assert labels["unlabelled_share"] == 1.0 and labels["overdue_share"] == 1.0
    assert labels["median_delay_labelled_s"] is None
    assert (_value(daemon, "tunewatch_label_delay_seconds") or 0.0) > 19 * DAY
    assert len(daemon.store.list_events(model=MODEL, type="label_delay_high")) == 1


def test_a_fast_minority_of_labels_does_not_hide_a_late_majority(daemon: Daemon) -> None:
    """90 % of the window's requests are 20 days old and unlabelled; the newest 10 %
    were labelled within an hour. The delay was reported as about an hour."""
    twenty_days_ago = Clock(datetime.now(UTC) - timedelta(days=20))
    feed(daemon, twenty_days_ago, 0, 540, shift=0.0, seed=1, labels=False)
    feed(daemon, Clock(datetime.now(UTC) - timedelta(hours=1)), 540, 60, shift=0.0, seed=2)
    daemon.evaluator.clock = lambda: datetime.now(UTC)
    labels = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}["labels"].payload
    assert labels["median_delay_labelled_s"] < 3600
    assert labels["alarm"] and labels["median_delay_s"] > 19 * DAY
    assert labels["unlabelled_share"] == pytest.approx(0.9)


def test_a_busy_model_whose_labels_stopped_raises_label_delay_high(daemon: Daemon) -> None:
    """The median delay was read over the current window only, and no request there had
    waited longer than the window reaches back: a model whose 600-row window spans a day
    never raised the seven-day alarm, whatever the labels did. Requests at least the
    alarm's age tell it: here none of them was ever labelled."""
    feed(daemon, Clock(datetime.now(UTC) - timedelta(days=20)), 0, WINDOW, shift=0.0, seed=1,
         labels=False)  # fmt: skip
    feed(daemon, Clock(datetime.now(UTC) - timedelta(days=1)), WINDOW, WINDOW, shift=0.0,
         seed=2, labels=False)  # fmt: skip
    daemon.evaluator.clock = lambda: datetime.now(UTC)
    labels = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}["labels"].payload
    assert labels["median_delay_s"] < 2 * DAY  # the current window: a day old at most
    assert labels["late_share"] == 1.0 and labels["n_aged"] == WINDOW
    assert labels["alarm"]
    assert (_value(daemon, "tunewatch_label_delay_seconds") or 0.0) > 19 * DAY
    assert len(daemon.store.list_events(model=MODEL, type="label_delay_high")) == 1


def test_requests_labelled_in_time_raise_no_label_delay_alarm_when_old(daemon: Daemon) -> None:
    clock = Clock()  # six hours ago; labelled now
    feed(daemon, clock, 0, WINDOW, shift=0.0, seed=1)
    daemon.evaluator.clock = lambda: datetime.now(UTC) + timedelta(days=8)
    labels = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}["labels"].payload
    assert labels["n_aged"] == WINDOW and labels["late_share"] == 0.0
    assert not labels["alarm"] and labels["median_delay_s"] < 7 * 3600


def test_one_aged_unlabelled_request_is_insufficient_data_not_a_label_delay_alarm(
    daemon: Daemon,
) -> None:
    """`late_share` rested on however few requests were old enough: one unlabelled
    request eight days old (a smoke test before launch) among recent ones labelled within
    hours measured a late share of 1.0 and raised `label_delay_high`. Fewer than
    `drift.min_rows` (100) aged requests do not judge it: the verdict is stored as
    insufficient data and raises nothing; 100 of them do."""
    feed(daemon, Clock(datetime.now(UTC) - timedelta(days=8)), 0, 1, shift=0.0, seed=1,
         labels=False)  # fmt: skip
    feed(daemon, Clock(), 1, WINDOW, shift=0.0, seed=2)  # six hours ago, labelled now
    daemon.evaluator.clock = lambda: datetime.now(UTC)
    row = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}["labels"]
    assert row.payload["n_aged"] == 1 and row.payload["late_share"] == 1.0
    assert row.status == "insufficient_data" and not row.payload["alarm"]
    assert "drift.min_rows=100" in row.payload["reason"]
    assert daemon.store.list_events(model=MODEL, type="label_delay_high") == []
    assert _value(daemon, "tunewatch_alarm", event="label_delay_high") == 0.0

    feed(daemon, Clock(datetime.now(UTC) - timedelta(days=9)), 10_000, 99, shift=0.0, seed=3,
         labels=False)  # fmt: skip
    row = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}["labels"]
    assert row.payload["n_aged"] == 100 and row.status == "ok" and row.payload["alarm"]
    assert len(daemon.store.list_events(model=MODEL, type="label_delay_high")) == 1


def test_requests_still_within_the_delay_alarm_do_not_raise_it(daemon: Daemon) -> None:
    """Unlabelled requests six hours old have waited six hours so far: the median delay
    is at least that, well under the seven-day alarm."""
    clock = Clock()  # six hours ago
    feed(daemon, clock, 0, WINDOW, shift=0.0, seed=1, labels=False)
    daemon.evaluator.clock = lambda: datetime.now(UTC)
    labels = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}["labels"].payload
    assert not labels["alarm"] and labels["overdue_share"] == 0.0
    assert 5 * 3600 < labels["median_delay_s"] < 7 * 3600


def _wait(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def _failed_evaluations(daemon: Daemon, model: str) -> float:
    exposition = daemon.metrics.exposition().decode()
    sample = f'tunewatch_evaluations_total{{model="{model}",outcome="evaluate_failed"}} '
    for line in exposition.splitlines():
        if line.startswith(sample):
            return float(line.removeprefix(sample))
    return 0.0


def test_degenerate_windows_are_insufficient_data_and_the_scheduler_survives_failures(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    # a second model every evaluation of which fails (a vanished reference snapshot no
    # longer does: drift is then insufficient data, and the other kinds run)
    ref = trained[0].reference
    assert ref is not None
    own = Reference(features=ref.features[:500], labels=None)  # its own artefact
    daemon.registry.register(
        "broken",
        trained[0].onnx,
        trained[0].metadata,
        actor="test",
        stage="champion",
        reference=own,
    )
    broken = daemon.store.champion("broken")
    assert broken is not None

    def evaluate(model: str) -> object:
        if model == "broken":
            raise RuntimeError("the evaluation of model 'broken' fails")
        return daemon.evaluator.evaluate(model)

    scheduler = Scheduler(
        store=daemon.store,
        config=daemon.config,
        metrics=daemon.metrics,
        jobs=[PerModelJob("evaluate", lambda m: 0.2, evaluate)],
    )
    scheduler.start()
    try:
        assert scheduler.leader
        # 1) empty window
        _wait(lambda: len(daemon.store.list_evaluations(MODEL, kind="drift")) >= 1)
        assert daemon.store.list_evaluations(MODEL, kind="drift")[0].status == ("insufficient_data")
        # 2) one row, 3) an all-NaN column, 4) a constant column
        clock = Clock()
        feed(daemon, clock, 0, 1, shift=0.0, seed=1)
        _wait(
            lambda: (
                daemon.store.list_evaluations(MODEL, kind="drift")[0].payload.get("n_current") == 1
            )
        )
        one = daemon.store.list_evaluations(MODEL, kind="drift")[0]
        assert one.status == "insufficient_data"
        x, _ = example_data(300, seed=5)
        x[:, 3] = np.nan
        x[:, 4] = 0.25
        champion = daemon.store.champion(MODEL)
        assert champion is not None
        daemon.store.write_records(
            [
                RequestRecord(
                    model=MODEL,
                    request_id=f"d{i}",
                    received_at=T0 + timedelta(hours=1, seconds=i),
                    source="mirror",
                    n_rows=1,
                    n_cols=8,
                    inputs=x[i : i + 1].tobytes(),
                )
                for i in range(300)
            ],
            [],
        )
        _wait(
            lambda: (
                daemon.store.list_evaluations(MODEL, kind="drift")[0].payload.get("n_current")
                == 301
            )
        )
        columns = {
            c["column"]: c
            for c in daemon.store.list_evaluations(MODEL, kind="drift")[0].payload["columns"]
        }
        assert columns["x3"]["status"] == "insufficient_data"
        # a column constant in the window but not in the reference is real drift (a feature
        # frozen upstream); constant in both is insufficient data (monitor's tests)
        assert columns["x4"]["drifted"] and columns["x0"]["status"] != "insufficient_data"
        # the broken model failed again and again, and the scheduler kept both jobs
        text = daemon.metrics.exposition().decode()
        _wait(lambda: _failed_evaluations(daemon, "broken") >= 2)
        assert scheduler.scheduled() == [
            "archive_studies",  # old studies moved to the archive, daily
            "count_events",  # the events every process stored, counted by the leader
            "evaluate:broken",
            "evaluate:credit",
            "expire_approvals",  # pending approval requests expired, hourly
            "export_tuning",  # with the daemon's metrics: the running jobs' progress
            "leadership",
        ]
        assert "tunewatch_evaluations_total" in text
    finally:
        scheduler.shutdown()


def test_only_one_scheduler_leads_and_another_takes_over(daemon: Daemon) -> None:
    jobs = [PerModelJob("evaluate", lambda m: 3600.0, daemon.evaluator.evaluate)]
    a = Scheduler(store=daemon.store, config=daemon.config, jobs=jobs, holder="a")
    b = Scheduler(store=daemon.store, config=daemon.config, jobs=jobs, holder="b")
    a.start()
    b.start()
    try:
        assert a.leader and not b.leader
        assert b.scheduled() == ["leadership"]
        assert a.scheduled() == [
            "archive_studies",
            "evaluate:credit",
            "expire_approvals",
            "leadership",
        ]
        a.shutdown()  # releases the lease
        b._lead()
        assert b.leader and b.scheduled() == [
            "archive_studies",
            "evaluate:credit",
            "expire_approvals",
            "leadership",
        ]
    finally:
        b.shutdown()


def test_a_value_the_reference_never_had_is_drift_not_a_failed_evaluation(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """A discrete column (here x0 with three reference values) showing only a value the
    reference never had is drift, stored with the evaluation (chi-square's statistic
    used to be infinite there, which JSON cannot hold, and failed the evaluation)."""
    reference = trained[0].reference
    assert reference is not None
    x = reference.features[:900].copy()
    x[:, 0] = np.arange(len(x)) % 3
    labels = None if reference.labels is None else reference.labels[:900]
    v2 = daemon.registry.register(
        MODEL,
        trained[0].onnx,
        trained[0].metadata,
        actor="t",
        reference=Reference(features=x, labels=labels),
    )
    daemon.store.promote(MODEL, v2.version, actor="t", reason="discrete reference")
    clock = Clock()
    daemon.evaluator.clock = clock

    def new_value(rows: np.ndarray) -> None:
        rows[:, 0] = 3.0

    feed(daemon, clock, 0, WINDOW, shift=0.0, seed=5, edit=new_value)
    rows = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}
    [x0] = [c for c in rows["drift"].payload["columns"] if c["column"] == "x0"]
    assert x0["method"] == "chisquare" and x0["drifted"] and x0["p_value"] < 1e-12
    assert x0["statistic"] == pytest.approx(900 + 600)  # a 2 x 4 table with no overlap
    assert {"decay", "estimate"} <= set(rows)  # the steps after drift ran too


def test_a_reference_whose_labels_cannot_calibrate_skips_the_estimate_not_the_evaluation(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """One-class reference labels cannot calibrate CBPE: the estimate says so, and drift,
    decay and the rest are evaluated as usual (every evaluation used to raise)."""
    reference = trained[0].reference
    assert reference is not None
    v2 = daemon.registry.register(
        MODEL,
        trained[0].onnx,
        trained[0].metadata,
        actor="t",
        reference=Reference(features=reference.features, labels=np.zeros(len(reference.features))),
    )
    daemon.store.promote(MODEL, v2.version, actor="t", reason="one-class reference")
    clock = Clock()
    daemon.evaluator.clock = clock
    feed(daemon, clock, 0, WINDOW, shift=0.0, seed=6)
    rows = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}
    assert rows["drift"].status == "ok"
    assert rows["estimate"].status == "insufficient_data"
    assert "decay" in rows


def test_telemetry_of_an_empty_window_reads_no_history(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no request in the window there is no start time to read latencies from; the
    whole latency history of the model used to be read instead."""
    reads: list[object] = []
    real = daemon.store.latencies

    def spy(model: str, *, since: object = None) -> object:
        reads.append(since)
        return real(model, since=since)  # type: ignore[arg-type]

    monkeypatch.setattr(daemon.store, "latencies", spy)
    rows = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}
    assert rows["telemetry"].status == "insufficient_data"
    assert reads == []


def _series(d: Daemon, metric: str) -> list[str]:
    return [
        line
        for line in d.metrics.exposition().decode().splitlines()
        if line.startswith(metric + "{") and f'model="{MODEL}"' in line
    ]


def test_a_replaced_champion_leaves_no_stale_per_version_series(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """A gauge keeps its last value until it is removed: the old champion's accuracy kept
    feeding `max by (model)` in the alert rules after a promotion."""
    run_stream(daemon, change_at=None, windows=2)
    # (the realised objective is the decay check's, exported once windows have matured)
    per_version = ("tunewatch_objective_estimated", "tunewatch_version_latency_p99_seconds")
    for metric in per_version:
        assert any('version="1"' in s for s in _series(daemon, metric)), metric
    v2 = daemon.registry.register(
        MODEL,
        trained[0].onnx,
        _copy_of(trained[0].metadata),
        actor="t",
        reference=trained[0].reference,
    )
    daemon.store.promote(MODEL, v2.version, actor="t", reason="replace")
    clock = daemon.evaluator.clock
    assert isinstance(clock, Clock)
    feed(daemon, clock, 10_000, WINDOW, shift=0.0, seed=9)  # a window scored by v2 only
    daemon.evaluator.evaluate(MODEL)
    for metric in per_version:
        series = _series(daemon, metric)
        assert any('version="2"' in s for s in series), metric
        assert not any('version="1"' in s for s in series), metric


def test_a_slope_with_no_windows_left_is_not_exported(daemon: Daemon) -> None:
    """`TunewatchObjectiveDecaying` kept firing on a slope fitted days ago once the decay
    horizon held no request to fit a new one."""
    run_stream(daemon, change_at=None, windows=1)
    daemon.metrics.decay_slope.labels(MODEL).set(0.5)  # as fitted on older windows
    daemon.evaluator.clock = Clock(datetime.now(UTC) + timedelta(days=3))
    rows = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}
    assert rows["decay"].status == "insufficient_data"
    assert _series(daemon, "tunewatch_decay_slope_per_day") == []


def test_a_replaced_champion_s_baseline_is_let_go(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """A baseline holds the reference snapshot (up to 1 GiB unpacked) and a session: one
    was cached per champion ever evaluated and never let go."""
    run_stream(daemon, change_at=None, windows=1)
    v2 = daemon.registry.register(
        MODEL,
        trained[0].onnx,
        _copy_of(trained[0].metadata),
        actor="t",
        reference=trained[0].reference,
    )
    daemon.store.promote(MODEL, v2.version, actor="t", reason="replace")
    daemon.evaluator.evaluate(MODEL)
    assert set(daemon.evaluator._baselines) == {(MODEL, 2)}
    # a report on the old champion's window builds its baseline without caching it
    [old] = [
        e for e in daemon.store.list_evaluations(MODEL, kind="drift", limit=10) if e.version == 1
    ]
    assert "<html" in daemon.evaluator.drift_report(MODEL, old.id).lower()
    assert set(daemon.evaluator._baselines) == {(MODEL, 2)}


@pytest.mark.slow
def test_the_report_of_an_old_window_is_found_after_ten_thousand_newer_ones(
    daemon: Daemon,
) -> None:
    """Reports were looked up among the newest 10,000 drift evaluations (about 35 days at
    one every five minutes); an older window's report answered 404."""
    run_stream(daemon, change_at=None, windows=1)
    [old] = daemon.store.list_evaluations(MODEL, kind="drift", limit=1)
    later = old.window_end + timedelta(minutes=5)
    with daemon.store.engine.begin() as conn:
        conn.execute(
            evaluations.insert(),
            [
                {
                    "model": MODEL,
                    "version": 1,
                    "kind": kind,
                    "status": "ok",
                    "window_start": None,
                    "window_end": later + timedelta(seconds=i),
                    "payload": {},
                    "created_at": later,
                }
                for i in range(10_000)
                for kind in ("drift", "drift_report")
            ],
        )
    html = daemon.evaluator.drift_report(MODEL, old.id)
    assert "<html" in html.lower()
    assert daemon.evaluator.drift_report(MODEL, old.id) == html  # stored, found again


def _value(d: Daemon, name: str, **labels: str) -> float | None:
    return d.metrics.registry.get_sample_value(name, {"model": MODEL, **labels})


def test_the_alarm_gauge_follows_the_policy_not_one_window(daemon: Daemon) -> None:
    """The shipped drift alert fired (and retuned through Alertmanager) on one drifted
    window, bypassing the two-window hysteresis the daemon itself applies."""
    clock = Clock()
    daemon.evaluator.clock = clock
    alarms = []
    for w in range(6):
        feed(daemon, clock, w * WINDOW, WINDOW, shift=1.0 if w >= 3 else 0.0, seed=100 + w)
        daemon.evaluator.evaluate(MODEL)
        alarms.append(_value(daemon, "tunewatch_alarm", event="drift_detected"))
    assert alarms == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]  # the second drifted window on
    # switched off, the kind's alarm drops instead of holding its last state
    daemon.config.models[0].evaluation.drift.__dict__["enabled"] = False
    feed(daemon, clock, 6 * WINDOW, WINDOW, shift=1.0, seed=200)
    daemon.evaluator.evaluate(MODEL)
    assert _value(daemon, "tunewatch_alarm", event="drift_detected") == 0.0
    assert _value(daemon, "tunewatch_alarm", event="estimate_dropped") is not None


def test_a_champion_without_a_reference_leaves_no_drift_figure_behind(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """The drift gauges kept the old champion's last window when the new champion had no
    reference to compare with, and the drift alert stayed firing."""
    run_stream(daemon, change_at=0, windows=2)
    assert _value(daemon, "tunewatch_drift_detected") == 1.0
    v2 = daemon.registry.register(MODEL, trained[0].onnx, trained[0].metadata, actor="t")
    daemon.store.promote(MODEL, v2.version, actor="t", reason="no reference")
    clock = daemon.evaluator.clock
    assert isinstance(clock, Clock)
    feed(daemon, clock, 10_000, WINDOW, shift=1.0, seed=9)
    daemon.evaluator.evaluate(MODEL)
    for name in ("tunewatch_drift_detected", "tunewatch_drift_share"):
        assert _value(daemon, name) is None, name
    assert not _series(daemon, "tunewatch_feature_drift_score")
    assert not _series(daemon, "tunewatch_feature_drifted")
    # the streak of the old champion's windows no longer holds the alarm up
    assert _value(daemon, "tunewatch_alarm", event="drift_detected") == 0.0


def test_a_process_that_loses_the_lease_stops_exporting_evaluation_figures(
    daemon: Daemon,
) -> None:
    """Prometheus scrapes every replica: a former leader's last drift figures fed
    `max by (model)` in the alert rules long after another process took over."""
    run_stream(daemon, change_at=0, windows=2)
    assert _value(daemon, "tunewatch_drift_detected") == 1.0
    a = Scheduler(
        store=daemon.store, config=daemon.config, jobs=[], holder="a", metrics=daemon.metrics
    )
    a.start()
    try:
        assert a.leader
        with daemon.store.engine.begin() as conn:  # the lease expires; "b" takes it
            conn.execute(
                leases.update().values(
                    holder="b", expires_at=datetime.now(UTC) + timedelta(hours=1)
                )
            )
        a._lead()
        assert not a.leader
        for name in ("tunewatch_drift_detected", "tunewatch_drift_share"):
            assert _value(daemon, name) is None, name
        assert _value(daemon, "tunewatch_alarm", event="drift_detected") is None
    finally:
        a.shutdown()


def test_a_follower_clears_figures_exported_after_it_lost_the_lease(daemon: Daemon) -> None:
    a = Scheduler(
        store=daemon.store, config=daemon.config, jobs=[], holder="a", metrics=daemon.metrics
    )
    with daemon.store.engine.begin() as conn:  # "b" leads
        conn.execute(
            leases.insert().values(
                name="scheduler", holder="b", expires_at=datetime.now(UTC) + timedelta(hours=1)
            )
        )
    a.start()
    try:
        assert not a.leader
        run_stream(daemon, change_at=0, windows=2)  # e.g. POST /evaluate on this replica
        assert _value(daemon, "tunewatch_drift_detected") == 1.0
        a._lead()
        assert _value(daemon, "tunewatch_drift_detected") is None
    finally:
        a.shutdown()


def test_a_window_that_measured_nothing_has_no_report(daemon: Daemon) -> None:
    """A drift evaluation with no traffic yet (insufficient_data) answered its report with
    a 500, on the API and the dashboard, which links the latest window's report."""
    daemon.evaluator.clock = Clock()
    rows = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}
    assert rows["drift"].status == "insufficient_data"
    with pytest.raises(NotFoundError, match="measured no window"):
        daemon.evaluator.drift_report(MODEL, rows["drift"].id)


def test_the_report_judges_columns_as_the_model_s_drift_settings_do(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The report used evidently's defaults whatever the model's drift settings, so it
    contradicted the stored verdict it explains."""
    d = _champion_daemon(
        trained,
        tmp_path,
        {
            "window_rows": WINDOW,
            "drift": {"columns": {"x0": {"method": "psi", "threshold": 100.0}}},
        },
    )
    try:
        clock = Clock()
        d.evaluator.clock = clock
        feed(d, clock, 0, WINDOW, shift=1.0, seed=3)
        rows = {r.kind: r for r in d.evaluator.evaluate(MODEL)}
        drifted = set(rows["drift"].payload["drifted_columns"])
        assert "x0" not in drifted and "x1" in drifted
        d.evaluator.drift_report(MODEL, rows["drift"].id)
        [report] = d.store.list_evaluations(MODEL, kind="drift_report", limit=1)
        assert "x0" not in report.payload["drifted_columns"]
        assert "x1" in report.payload["drifted_columns"]
    finally:
        d.close()


def test_labels_that_have_not_matured_are_not_tested_for_drift(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A label's delay may depend on the outcome (a default is known at once, a
    repayment later): the labels of the newest requests, mostly positives, made
    unchanged traffic label drift (p = 6e-9) and, under `fdr`, dataset drift alone.
    Labels are read only for requests older than `decay.maturity_s` (a day here)."""
    d = _champion_daemon(
        trained, tmp_path, {"window_rows": WINDOW, "drift": {"dataset_rule": "fdr"}}
    )
    try:
        clock = Clock()  # six hours ago: no label has matured
        d.evaluator.clock = clock
        feed(d, clock, 0, WINDOW, shift=0.0, seed=103, labels=False)
        _, y = example_data(WINDOW, seed=103, shift=0.0)
        arrived = [i for i in range(WINDOW) if y[i] == 1 or i < WINDOW // 2]
        d.store.add_labels(
            MODEL, [LabelItem(request_id=f"r{i}", value=float(y[i])) for i in arrived]
        )
        drift = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"].payload
        [label] = [c for c in drift["columns"] if c["column"] == "__label__"]
        assert label["status"] == "insufficient_data" and label["n_cur"] == 0
        assert not drift["alarm"]
    finally:
        d.close()


def test_labels_of_requests_older_than_the_maturity_are_tested_for_drift(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Requests six hours old with a one-hour maturity: their labels are complete, and
    a label distribution that changed (every label positive) is label drift. Newer
    requests' labels in the same window are left out."""
    d = _champion_daemon(trained, tmp_path, {"window_rows": WINDOW, "decay": {"maturity_s": 3600}})
    try:
        clock = Clock()  # six hours ago
        evaluated_at = clock.now + timedelta(hours=6)
        d.evaluator.clock = lambda: evaluated_at
        feed(d, clock, 0, 400, shift=0.0, seed=104, labels=False)
        clock.now += timedelta(hours=5, minutes=30)  # 200 requests half an hour old
        feed(d, clock, 400, 200, shift=0.0, seed=105, labels=False)
        d.store.add_labels(MODEL, [LabelItem(request_id=f"r{i}", value=1.0) for i in range(600)])
        drift = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"].payload
        [label] = [c for c in drift["columns"] if c["column"] == "__label__"]
        assert label["n_cur"] == 400 and label["drifted"]
    finally:
        d.close()


def test_the_report_reads_the_labels_the_verdict_read(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The verdict tests the label on requests at least `decay.maturity_s` old only; the
    report handed evidently every label of the window, the early (positive) labels of the
    newest requests included, and called the label drifted where the verdict found no
    drift."""
    d = _champion_daemon(trained, tmp_path, {"window_rows": WINDOW, "decay": {"maturity_s": 3600}})
    try:
        clock = Clock()  # six hours ago
        feed(d, clock, 0, 400, shift=0.0, seed=104)  # matured, with their true labels
        clock.now += timedelta(hours=5, minutes=30)  # 200 requests half an hour old,
        feed(d, clock, 400, 200, shift=0.0, seed=105, labels=False)
        # whose labels came first for the positives (a delay that depends on the outcome)
        d.store.add_labels(
            MODEL, [LabelItem(request_id=f"r{i}", value=1.0) for i in range(400, 600)]
        )
        run = datetime.now(UTC)  # after the labels, stamped with the real time
        d.evaluator.clock = lambda: run
        drift = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
        [label] = [c for c in drift.payload["columns"] if c["column"] == "__label__"]
        assert label["status"] == "ok" and label["n_cur"] == 400 and not label["drifted"]
        d.evaluator.drift_report(MODEL, drift.id)
        [report] = d.store.list_evaluations(MODEL, kind="drift_report", limit=1)
        assert "__label__" not in report.payload["drifted_columns"]
        assert set(report.payload["drifted_columns"]) == set(drift.payload["drifted_columns"])
    finally:
        d.close()


def test_matured_labels_of_a_busy_model_are_tested_on_their_own_window(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Labels were taken only from the matured requests of the newest window: a model
    whose `window_rows` (5000 by default) fill in less than `decay.maturity_s` (a day),
    more than ~3.5 requests a minute, never had one, and its label drift was
    insufficient_data at every run. The label is tested on the newest `window_rows`
    requests at least a maturity old, and the report reads the same ones."""
    d = _champion_daemon(trained, tmp_path, {"window_rows": WINDOW})  # maturity_s: a day
    try:
        two_days_ago = Clock(datetime.now(UTC) - timedelta(days=2))
        feed(d, two_days_ago, 0, WINDOW, shift=0.0, seed=104, labels=False)
        # every matured label positive: the label distribution changed completely
        d.store.add_labels(MODEL, [LabelItem(request_id=f"r{i}", value=1.0) for i in range(WINDOW)])
        recent = Clock()  # the last six hours: a window with no matured request
        feed(d, recent, WINDOW, WINDOW, shift=0.0, seed=105, labels=False)
        d.evaluator.clock = lambda: datetime.now(UTC)
        drift = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
        [label] = [c for c in drift.payload["columns"] if c["column"] == "__label__"]
        assert label["n_cur"] == WINDOW and label["drifted"]  # tested, and drifted
        assert drift.payload["n_current"] == WINDOW  # the features' window
        judged = drift.payload["label_window"]
        assert judged["n"] == WINDOW
        first = datetime.fromisoformat(judged["first_request_at"])
        last = datetime.fromisoformat(judged["last_request_at"])
        assert abs(last - two_days_ago.now) < timedelta(milliseconds=1)  # r599
        assert abs(first - (last - timedelta(seconds=WINDOW - 1))) < timedelta(milliseconds=1)
        # the alarm rests on those labels: hysteresis tells verdicts apart by them too
        assert drift.payload["label_first_request_at"] == judged["first_request_at"]
        d.evaluator.drift_report(MODEL, drift.id)
        [report] = d.store.list_evaluations(MODEL, kind="drift_report", limit=1)
        assert "__label__" in report.payload["drifted_columns"]
    finally:
        d.close()


def test_a_window_too_small_to_measure_is_not_judged_on_its_labels_alone(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """With its own window, the label could be tested when the current window held too
    few requests to test anything else: the dataset share of one column, the label, made
    a quiet hour dataset drift."""
    d = _champion_daemon(
        trained, tmp_path, {"window_rows": None, "window_s": 600, "decay": {"maturity_s": 3600}}
    )
    try:
        clock = Clock()  # six hours ago
        clock.now += timedelta(hours=4, minutes=55)
        feed(d, clock, 0, 300, shift=0.0, seed=105, labels=False)  # in the label window
        d.store.add_labels(MODEL, [LabelItem(request_id=f"r{i}", value=1.0) for i in range(300)])
        run = clock.now + timedelta(hours=1, minutes=5)
        clock.now = run - timedelta(seconds=60)
        feed(d, clock, 300, 10, shift=0.0, seed=106)  # fewer than drift.min_rows
        d.evaluator.clock = lambda: run
        drift = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
        assert drift.status == "insufficient_data" and not drift.payload["alarm"]
        [label] = [c for c in drift.payload["columns"] if c["column"] == "__label__"]
        assert label["status"] == "insufficient_data" and label["n_cur"] == 0
    finally:
        d.close()


def test_the_report_of_a_verdict_stored_before_the_label_window_reads_its_labels(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A verdict stored before labels had their own window tested the matured part of
    its window: its report reads those labels, not the label window's."""
    d = _champion_daemon(trained, tmp_path, {"window_rows": WINDOW, "decay": {"maturity_s": 3600}})
    try:
        clock = Clock()  # six hours ago
        feed(d, clock, 0, 200, shift=0.0, seed=104, labels=False)  # only in the label window
        d.store.add_labels(MODEL, [LabelItem(request_id=f"r{i}", value=1.0) for i in range(200)])
        feed(d, clock, 200, 400, shift=0.0, seed=105)  # matured, true labels: in both
        clock.now += timedelta(hours=5, minutes=30)
        feed(d, clock, 600, 200, shift=0.0, seed=106, labels=False)  # not matured
        run = datetime.now(UTC)  # after the labels, stamped with the real time
        d.evaluator.clock = lambda: run
        drift = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
        assert "__label__" in drift.payload["drifted_columns"]  # the label window's labels
        legacy = {
            k: v
            for k, v in drift.payload.items()
            if k not in ("label_window", "label_first_request_at", "label_last_request_at")
        }
        legacy["drifted_columns"] = [c for c in legacy["drifted_columns"] if c != "__label__"]
        with d.store.engine.begin() as conn:
            conn.execute(
                evaluations.update().where(evaluations.c.id == drift.id).values(payload=legacy)
            )
        d.evaluator.drift_report(MODEL, drift.id)
        [report] = d.store.list_evaluations(MODEL, kind="drift_report", limit=1)
        assert "__label__" not in report.payload["drifted_columns"]  # r200-r599's labels
    finally:
        d.close()


def test_the_label_window_of_window_s_ends_a_maturity_before_the_run(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """With `window_s`, the label is tested on the requests of a `window_s` that ended
    `decay.maturity_s` before the run, not on a window's matured part."""
    d = _champion_daemon(
        trained, tmp_path, {"window_rows": None, "window_s": 600, "decay": {"maturity_s": 3600}}
    )
    try:
        clock = Clock()  # six hours ago
        feed(d, clock, 0, 300, shift=0.0, seed=104)  # too old for either window
        clock.now += timedelta(hours=4, minutes=50)
        feed(d, clock, 300, 300, shift=0.0, seed=105)  # in the label window
        run = clock.now + timedelta(hours=1, minutes=5)
        clock.now = run - timedelta(seconds=300)
        feed(d, clock, 600, 200, shift=0.0, seed=106)  # in the run's window
        d.evaluator.clock = lambda: run
        drift = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"].payload
        [label] = [c for c in drift["columns"] if c["column"] == "__label__"]
        assert drift["label_window"]["n"] == 300 and label["n_cur"] == 300
        assert drift["n_current"] == 200
    finally:
        d.close()


def test_a_drift_setting_the_reference_cannot_take_loses_drift_not_the_evaluation(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """chisquare on a continuous feature is known to be wrong only against the
    champion's reference: the detector refused it at every run, and the run raised
    before decay, labels, the estimate and telemetry were stored. That column alone is
    left untested; the others are tested as usual."""
    d = _champion_daemon(
        trained,
        tmp_path,
        {"window_rows": WINDOW, "drift": {"columns": {"x0": {"method": "chisquare"}}}},
    )
    try:
        clock = Clock()
        d.evaluator.clock = clock
        feed(d, clock, 0, WINDOW, shift=0.0, seed=103)
        rows = {r.kind: r for r in d.evaluator.evaluate(MODEL)}
        assert rows["drift"].status == "ok" and not rows["drift"].payload["alarm"]
        [x0] = [c for c in rows["drift"].payload["columns"] if c["column"] == "x0"]
        assert x0["status"] == "insufficient_data" and "needs a discrete column" in x0["reason"]
        assert {rows[k].status for k in ("telemetry", "estimate")} == {"ok"}
        # measured (no request is a week old yet: too few to judge the label delay)
        assert rows["labels"].status == "insufficient_data"
        # every request labelled, none due yet (younger than decay.maturity_s): no coverage
        assert rows["labels"].payload["labelled_so_far"] == 1.0
        assert rows["labels"].payload["coverage"] is None
        assert "decay" in rows
        assert _series(d, "tunewatch_drift_share") == ['tunewatch_drift_share{model="credit"} 0.0']
    finally:
        d.close()


def _copy_of(metadata: VersionMetadata) -> VersionMetadata:
    """``metadata`` of another dataset: a copy of the champion registered again as it is
    would be a retry, refused ``version_exists``."""
    return dataclasses.replace(metadata, dataset_version="copy")


def _promote_a_copy(d: Daemon, trained: list[ExampleModel]) -> int:
    v2 = d.registry.register(
        MODEL,
        trained[0].onnx,
        _copy_of(trained[0].metadata),
        actor="t",
        reference=trained[0].reference,
    )
    d.store.promote(MODEL, v2.version, actor="t", reason="replace")
    return v2.version


def test_a_drift_streak_does_not_carry_over_a_promotion(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """The old champion's drifted window (against its reference) counted toward the new
    champion's two-window streak: the first drifted window of v2 raised drift_detected."""
    clock = Clock()
    daemon.evaluator.clock = clock
    feed(daemon, clock, 0, WINDOW, shift=1.0, seed=100)
    assert {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}["drift"].payload["alarm"]
    _promote_a_copy(daemon, trained)
    feed(daemon, clock, WINDOW, WINDOW, shift=1.0, seed=101)
    assert {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}["drift"].payload["alarm"]
    assert daemon.store.list_events(model=MODEL, type="drift_detected") == []
    feed(daemon, clock, 2 * WINDOW, WINDOW, shift=1.0, seed=102)
    daemon.evaluator.evaluate(MODEL)
    assert len(daemon.store.list_events(model=MODEL, type="drift_detected")) == 1


def test_decay_follows_the_champion_not_the_versions_before_it(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The decay trend and its realised gauge (labelled with the champion's version) read
    every answered row of the horizon, the previous champion's included."""
    # labels arrive now, up to 6 h after their requests: matured within 6 h
    daemon = _champion_daemon(
        trained, tmp_path, {"decay": {"window_s": 3600, "maturity_s": 21_600}}
    )
    try:
        clock = Clock()
        daemon.evaluator.clock = clock
        for w in range(4):  # v1 answers four hourly decay windows
            feed(daemon, clock, w * WINDOW, WINDOW, shift=0.0, seed=200 + w)
            clock.now += timedelta(seconds=3600 - WINDOW)
        clock.now = datetime.now(UTC) + timedelta(hours=6)  # every window has matured
        first = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}["decay"]
        assert first.status == "ok"
        assert _series(daemon, "tunewatch_objective_realised") != []
        version = _promote_a_copy(daemon, trained)
        rows = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}
        assert rows["decay"].version == version
        assert rows["decay"].status == "insufficient_data"  # v2 answered nothing yet
        assert _series(daemon, "tunewatch_objective_realised") == []
    finally:
        daemon.close()


def _write_hour(d: Daemon, t0: datetime, hour: int, n: int, accuracy: float, seed: int) -> None:
    """``n`` labelled requests in hour ``hour`` after ``t0`` whose champion predictions
    are right with probability ``accuracy`` (all wrong when ``accuracy`` is 0)."""
    x, _ = example_data(n, seed=seed)
    champion = d.store.champion(MODEL)
    assert champion is not None
    session = OnnxModel.from_bytes(d.artefacts.get(champion.artefact_sha256))
    probs = session.primary(session.run(x))
    predicted = (probs[:, 1] >= 0.5).astype(float)
    right = np.random.default_rng(seed).random(n) < accuracy
    labels = np.where(right, predicted, 1.0 - predicted)
    requests, outputs = [], []
    for i in range(n):
        rid, at = f"h{hour}-{i}", t0 + timedelta(hours=hour, seconds=10 + i)
        request, output = champion_answered(
            rid, at, x[i : i + 1], probs[i : i + 1], version=champion.version
        )
        requests.append(request)
        outputs.append(output)
    d.store.write_records(requests, outputs)
    d.store.add_labels(
        MODEL, [LabelItem(request_id=f"h{hour}-{i}", value=float(labels[i])) for i in range(n)]
    )


@pytest.mark.parametrize(
    "tiny_first_window", [False, True], ids=["no-tiny-window", "a-two-request-first-window"]
)
def test_a_tiny_first_window_does_not_set_the_default_decay_threshold(
    trained: list[ExampleModel], tmp_path: Path, tiny_first_window: bool
) -> None:
    """Accuracy falls from 0.90 to 0.80 over 23 hourly windows of 300 requests. With no
    `decay.threshold` it was the oldest window's value less 5 tolerances: a first window
    of two misclassified requests put it at -0.05, and the same significant decay raised
    no alarm. It is now anchored on the early windows weighted by their labelled rows."""
    d = _champion_daemon(
        trained,
        tmp_path,
        {
            "window_rows": WINDOW,
            "decay": {"window_s": 3600, "maturity_s": 0, "horizon_windows": 24, "horizon_days": 1},
        },
        model={"objective": {"name": "accuracy"}},
    )
    try:
        # labels are stamped with the database's time: requests after it have every
        # label matured with maturity_s = 0. On an hour's edge, as the decay windows are:
        # from the wall clock's minute, an hour's 300 requests straddled two windows
        # whenever the test ran in an hour's last five minutes, and the anchor moved
        t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
        d.evaluator.clock = lambda: t0 + timedelta(hours=24)
        if tiny_first_window:
            _write_hour(d, t0, 0, 2, 0.0, seed=1)
        for hour in range(1, 24):
            _write_hour(d, t0, hour, 300, 0.90 - 0.10 * (hour - 1) / 22, seed=100 + hour)
        decay = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["decay"].payload
        assert decay["status"] == "decaying"
        assert decay["threshold"] == pytest.approx(0.90 - 5 * 0.01, abs=0.03)
        assert decay["alarm"]
    finally:
        d.close()


def test_a_row_without_an_output_has_no_predicted_class() -> None:
    """Rows a live split's challenger answered (no champion output: NaN) were counted as
    class "0", and raised prediction drift on a 50/50 split of unchanged traffic."""
    from tunewatch._drift_report import PREDICTION, drift_frame
    from tunewatch.store import ModelRow

    model = ModelRow(
        name="mc", task="multiclass", feature_names=("a",), regulated=False, created_at=T0
    )
    outputs = np.array([[0.1, 0.7, 0.2], [np.nan] * 3, [0.6, 0.3, 0.1]], dtype=np.float32)
    frame = drift_frame(model, np.zeros((3, 1)), outputs, None)
    assert frame[PREDICTION].tolist()[0] == "1" and frame[PREDICTION].tolist()[2] == "0"
    assert frame[PREDICTION].isna().tolist() == [False, True, False]


def test_a_label_window_of_another_length_leaves_the_other_columns_missing() -> None:
    """The label is tested on its own window: the frame is as long as the longer of the
    two, and a column's test leaves its missing values out."""
    from tunewatch._drift_report import LABEL, PREDICTION, drift_frame
    from tunewatch.store import ModelRow

    model = ModelRow(name="b", task="binary", feature_names=("a",), regulated=False, created_at=T0)
    outputs = np.array([[0.2, 0.8], [0.6, 0.4]], dtype=np.float32)
    longer = drift_frame(model, np.ones((2, 1)), outputs, np.array([1.0, 0.0, 1.0]))
    assert longer["a"].isna().tolist() == [False, False, True]
    assert longer[PREDICTION].isna().tolist() == [False, False, True]
    assert longer[LABEL].tolist() == [1.0, 0.0, 1.0]
    shorter = drift_frame(model, np.ones((2, 1)), outputs, np.array([1.0]))
    assert len(shorter) == 2 and shorter[LABEL].isna().tolist() == [False, True]


def test_drift_figures_that_could_not_be_measured_are_removed(daemon: Daemon) -> None:
    """A window with no traffic exported drift share 0 and no drift: nothing was tested."""
    clock = Clock()
    daemon.evaluator.clock = clock
    daemon.evaluator.evaluate(MODEL)  # no traffic yet
    assert _series(daemon, "tunewatch_drift_share") == []
    assert _series(daemon, "tunewatch_drift_detected") == []
    feed(daemon, clock, 0, WINDOW, shift=1.0, seed=1)
    daemon.evaluator.evaluate(MODEL)
    assert _value(daemon, "tunewatch_drift_share") is not None
    assert _value(daemon, "tunewatch_feature_drift_score", feature="x1", method="ks") is not None
    assert _value(daemon, "tunewatch_feature_drifted", feature="x1") == 1.0


def test_the_report_agrees_with_the_stored_verdict_on_a_small_window(daemon: Daemon) -> None:
    """The verdict picks a column's default method by the smaller sample (a p-value test
    for this 600-row window), evidently by the reference's size: the report is built
    with the methods the verdict used."""
    clock = Clock()
    daemon.evaluator.clock = clock

    def shift_two(x: np.ndarray) -> None:
        x[:, :2] += 1.0

    feed(daemon, clock, 0, WINDOW, shift=0.0, seed=4, edit=shift_two)
    drift = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}["drift"]
    assert {c["method"] for c in drift.payload["columns"]} <= {"ks", "chisquare", "z"}
    daemon.evaluator.drift_report(MODEL, drift.id)
    [report] = daemon.store.list_evaluations(MODEL, kind="drift_report", limit=1)
    assert set(report.payload["drifted_columns"]) == set(drift.payload["drifted_columns"])
    assert {"x0", "x1"} <= set(drift.payload["drifted_columns"])


def test_the_report_leaves_out_the_columns_the_verdict_could_not_test(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Under the `share` rule the verdict divides by the columns it tested, leaving out
    the label when fewer than `min_rows` requests of the window are labelled; evidently
    was handed every column at the same share threshold, divided by one more, and said
    "Dataset Drift is NOT detected" of a window the verdict called drifted."""
    d = _champion_daemon(trained, tmp_path, {"drift": {"share_threshold": 0.55}})
    try:
        clock = Clock(datetime.now(UTC) - timedelta(minutes=30))

        def shift_three(x: np.ndarray) -> None:
            x[:, :3] += 3.0

        feed(d, clock, 0, 400, shift=0.0, seed=5, labels=False, edit=shift_three)
        d.store.add_labels(MODEL, [LabelItem(f"r{i}", float(i % 2)) for i in range(20)])
        d.evaluator.clock = lambda: clock.now + timedelta(seconds=1)
        drift = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
        p = drift.payload
        assert p["alarm"] and p["insufficient"] == ["__label__"]
        # the scenario: drifted over the tested columns, not over every column
        assert len(p["drifted_columns"]) / len(p["columns"]) < 0.55 <= p["drifted_share"]
        html = d.evaluator.drift_report(MODEL, drift.id)
        assert "Dataset Drift is detected. Dataset drift detection threshold is 0.55" in html
        [report] = d.store.list_evaluations(MODEL, kind="drift_report", limit=1)
        assert report.payload["drifted_columns"] == sorted(p["drifted_columns"])
    finally:
        d.close()


def test_a_streak_does_not_resume_when_a_champion_is_restored(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """Filtered by version, v1's drifted window from before v2's promotion counted again
    once a rollback restored v1: its first drifted window after it completed the streak."""
    clock = Clock()
    daemon.evaluator.clock = clock
    feed(daemon, clock, 0, WINDOW, shift=1.0, seed=300)
    daemon.evaluator.evaluate(MODEL)  # v1 drifted: streak 1
    _promote_a_copy(daemon, trained)
    feed(daemon, clock, WINDOW, WINDOW, shift=0.0, seed=301)
    daemon.evaluator.evaluate(MODEL)
    daemon.store.rollback(MODEL, actor="t", reason="back to v1")
    clock.now = datetime.now(UTC)  # evaluated after the rollback
    feed(daemon, clock, 2 * WINDOW, WINDOW, shift=1.0, seed=302)
    rows = {r.kind: r for r in daemon.evaluator.evaluate(MODEL)}
    assert rows["drift"].version == 1 and rows["drift"].payload["alarm"]
    assert daemon.store.list_events(model=MODEL, type="drift_detected") == []


@pytest.mark.parametrize("rule", ["bonferroni", "fdr"])
def test_the_report_applies_the_multiple_testing_rule_of_the_verdict(rule: str) -> None:
    """Under bonferroni or fdr the verdict corrects the p-values; the report judged each
    column at the raw threshold and named columns the verdict had cleared."""
    from monitor import ReferenceProfile, evidently_report
    from monitor.drift import DriftDetector
    from tunewatch._config import DriftEvaluationConfig
    from tunewatch._drift_report import judged_as

    rng = np.random.default_rng(0)
    names = list("abcdefgh")
    reference = pd.DataFrame(rng.normal(size=(3000, 8)), columns=names)
    current = pd.DataFrame(rng.normal(size=(600, 8)), columns=names)
    current["a"] += 0.11  # raw KS p about 0.01-0.04
    current["b"] += 0.5
    result = DriftDetector(ReferenceProfile.build(reference), dataset_rule=rule).check(current)
    payload = {
        "rule": rule,
        "columns": [
            {
                "column": c.column,
                "method": c.method,
                "threshold": c.threshold,
                "p_value": c.p_value,
                "status": c.status,
            }
            for c in result.columns
        ],
    }
    columns, share = judged_as(payload, DriftEvaluationConfig(dataset_rule=rule))
    _, verdicts = evidently_report(reference, current, columns=columns, drift_share=share)
    assert {k for k, v in verdicts.items() if v} == set(result.drifted_columns) == {"b"}


def test_the_decay_anchor_weights_windows_by_the_rows_behind_their_values() -> None:
    """The trend is fitted with the scored rows as weights (a label MAPE cannot score is
    left out of its window's value); the anchor weighted by every labelled request, so a
    window whose value stood on 10 of its 100 rows weighed as if on all 100."""
    from monitor import WindowValue
    from tunewatch._evaluation_decay import _early_level

    def window(value: float, n: int, left_out: int) -> WindowValue:
        return WindowValue(
            window_start=0.0,
            window_end=1.0,
            value=value,
            n=n,
            n_requests=n,
            label_coverage=1.0,
            median_label_delay_s=None,
            n_left_out=left_out,
        )

    level = _early_level([window(0.9, 100, 90), window(0.5, 10, 0)], 2)
    assert level == pytest.approx((0.9 * 10 + 0.5 * 10) / 20)


def test_feature_drift_gauges_name_the_method_and_export_the_verdict(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """`tunewatch_feature_drift_score` mixed KS D, chi-square, signed z and distances with
    nothing saying which: an unchanged feature's series jumped as its window crossed 1000
    rows. The score carries its `method`, one series a feature (the old method's is
    removed), and `tunewatch_feature_drifted` is the stored 0/1 verdict."""
    d = _champion_daemon(trained, tmp_path, {"window_s": 3600})
    try:
        clock = Clock()
        d.evaluator.clock = clock
        methods = []
        for n, shift, seed in ((600, 0.0, 1), (1200, 1.0, 2)):  # reference: 1500 rows
            clock.now += timedelta(hours=2)
            feed(d, clock, 10_000 * seed, n, shift=shift, seed=seed)
            drift = {r.kind: r for r in d.evaluator.evaluate(MODEL)}["drift"]
            columns = {c["column"]: c for c in drift.payload["columns"]}
            for feature in ("x0", "x1"):
                method = columns[feature]["method"]
                scores = _series(d, "tunewatch_feature_drift_score")
                assert [s for s in scores if f'feature="{feature}"' in s] == [
                    next(s for s in scores if f'feature="{feature}"' in s)
                ]
                assert _value(
                    d, "tunewatch_feature_drift_score", feature=feature, method=method
                ) == pytest.approx(columns[feature]["statistic"])
                assert _value(d, "tunewatch_feature_drifted", feature=feature) == float(
                    columns[feature]["drifted"]
                )
            methods.append(columns["x0"]["method"])
        assert methods == ["ks", "wasserstein"]
        assert _value(d, "tunewatch_feature_drifted", feature="x0") == 1.0
    finally:
        d.close()


@pytest.mark.parametrize("rule", ["bonferroni", "fdr"])
def test_the_report_judges_a_p_value_column_at_the_cut_off_its_verdict_stored(rule: str) -> None:
    """A window mixing p-value and distance columns (a label column with few rows beside
    Wasserstein features): the verdict's family counts every tested column, and the report
    recomputed the cut-off over the p-value columns alone (m = 1: alpha itself), so it named
    a column the verdict had cleared."""
    from tunewatch._config import DriftEvaluationConfig
    from tunewatch._drift_report import judged_as

    cut = 0.05 / 3  # what the verdict's rule stored: one p-value column among three tested
    payload = {
        "rule": rule,
        "columns": [
            {"column": "x0", "method": "ks", "threshold": cut, "p_value": 0.03, "status": "ok"},
            *(
                {
                    "column": name,
                    "method": "wasserstein",
                    "threshold": 0.1,
                    "p_value": None,
                    "status": "ok",
                }
                for name in ("x1", "x2")
            ),
        ],
    }
    columns, _ = judged_as(payload, DriftEvaluationConfig(dataset_rule=rule))
    threshold = columns["x0"].threshold
    assert threshold is not None and cut <= threshold < 0.03  # p = 0.03 is not drifted
    assert columns["x1"].threshold == 0.1
