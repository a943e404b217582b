"""A run of a shared study that stops while another worker still trains a trial chooses
its winner once that trial has ended: the result is the study's, not the part of it this
run saw."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import optuna
import pytest
from retune_data import binary, small_space

from monitor.objectives import make_objective
from retune import Budget, TuningResult, run_study
from retune._optuna import close_storage, make_storage
from retune.cv import StratifiedKFoldCV

pytestmark = pytest.mark.postgres

STUDY = "s"
#: The trial the worker that keeps running trains, and the one the other trains: a
#: logistic regression all but without its features loses to it.
GOOD = {"scaler": "standard", "estimator": "logistic", "C": 1.0}
POOR = {"scaler": "none", "estimator": "logistic", "C": 0.001}
#: The hold's safety net: a held trial left unreleased this long fails, ending the test.
HOLD_LIMIT_S = 60.0


class Hold:
    """Holds the trial ``thread`` begins once armed until released (those after pass)."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.armed = threading.Event()  # the thread's run began its trials
        self.holding = threading.Event()  # its trial is held
        self.release = threading.Event()

    def wait_here(self) -> None:
        if threading.current_thread() is not self.thread or not self.armed.is_set():
            return
        self.holding.set()
        if not self.release.wait(HOLD_LIMIT_S):
            raise RuntimeError(f"the held trial was not released within {HOLD_LIMIT_S} s")


@dataclass(frozen=True, kw_only=True)
class HeldFolds(StratifiedKFoldCV):
    hold: Hold = field(default_factory=Hold, compare=False)

    def split(self, x: Any, y: Any, *, groups: Any = None, seed: int) -> Iterator[Any]:
        self.hold.wait_here()
        yield from super().split(x, y, groups=groups, seed=seed)


def _with_study(url: str, act: Callable[[optuna.Study], Any]) -> Any:
    backend = make_storage(url, heartbeat_interval=None)
    try:
        return act(optuna.load_study(study_name=STUDY, storage=backend))
    finally:
        close_storage(backend)


def _create_with(url: str, params: list[dict[str, Any]]) -> None:
    """The study, its first trials enqueued: each worker's first trial is the next one."""
    backend = make_storage(url, heartbeat_interval=None)
    try:
        study = optuna.create_study(study_name=STUDY, storage=backend)
        for p in params:
            study.enqueue_trial(p)
    finally:
        close_storage(backend)


def _setup(url: str, hold: Hold, budget: Budget) -> dict[str, Any]:
    """``run_study``'s arguments for either worker of study ``STUDY``."""
    x, y = binary(seed=4, n=150)
    return {
        "storage": url,
        "study_name": STUDY,
        "space": small_space(),
        "x": x,
        "y": y,
        "objective": make_objective("log_loss"),
        "cv": HeldFolds(n_splits=2, hold=hold),
        "budget": budget,
        "plan": None,
        "seed": 0,
        "heartbeat_interval": 1,
    }


def _start_other_worker(
    setup: dict[str, Any], hold: Hold, *, held: int = 1
) -> tuple[threading.Thread, list[TuningResult | BaseException]]:
    """The worker whose ``held``-th trial ``hold`` holds, started; it has begun that
    trial."""
    results: list[TuningResult | BaseException] = []
    checks = 0

    def arm() -> bool:  # at its budget checks: before each trial, and after the last
        nonlocal checks
        checks += 1
        if checks >= held:
            hold.armed.set()
        return False

    def work() -> None:
        try:
            results.append(run_study(**setup, interrupted=arm))
        except BaseException as exc:  # reported by the caller's assertions
            results.append(exc)

    hold.thread = threading.Thread(target=work)
    hold.thread.start()
    if not hold.holding.wait(HOLD_LIMIT_S):
        hold.release.set()
        hold.thread.join(HOLD_LIMIT_S)
        pytest.fail(f"the other worker's trial never began: {results}")
    return hold.thread, results


def test_a_run_stopping_on_its_wall_time_counts_the_trial_another_worker_still_trains(
    pg_url: str,
) -> None:
    """The worker that stopped first on ``wall_time_s`` chose its winner at once: the
    job registered a best of 0.5345 while the other worker's trial, ending under a second
    later, reached 0.5328, and its result counted one trial of two."""
    _create_with(pg_url, [GOOD, POOR])
    hold = Hold()
    setup = _setup(pg_url, hold, Budget(max_trials=None, wall_time_s=100.0))
    other, theirs = _start_other_worker(setup, hold)
    checks = 0

    def check() -> bool:
        """This worker's budget checks: before its trial, the study's wall time is
        spent by a run that ended before (1000 s of a 100 s budget), seen at the check
        after it; a check after that one is the stopped run waiting."""
        nonlocal checks
        checks += 1
        if checks == 1:
            began = time.time() - 2000.0
            record = {"started_at": began, "ended_at": began + 1000.0, "wall_s": 1000.0}
            _with_study(pg_url, lambda s: s.set_user_attr("time_spent:earlier", record))
        elif checks > 2:
            hold.release.set()
        return False

    try:
        ours = run_study(**setup, interrupted=check)
    finally:
        hold.release.set()
        other.join(HOLD_LIMIT_S)
    [their_result] = theirs
    assert isinstance(their_result, TuningResult), their_result
    trials = _with_study(pg_url, lambda s: s.get_trials(deepcopy=False))
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert [t.params for t in sorted(complete, key=lambda t: t.number)] == [GOOD, POOR]
    best = min(complete, key=lambda t: t.value)
    assert best.params == GOOD
    assert ours.stopped_by == "wall_time"
    assert (ours.n_trials, ours.best_value, ours.best_params) == (2, best.value, GOOD)
    assert (their_result.n_trials, their_result.best_value) == (2, best.value)


def test_a_trial_that_heartbeats_but_never_ends_holds_a_stopped_run_only_so_long(
    pg_url: str,
) -> None:
    """A trial stuck in another worker, its heartbeats going on, holds a run stopped on
    its ``wall_time_s`` no longer than that again (at least the heartbeats' grace, 3.25 s
    here): the run's result leaves it out. (The other worker's budget is its own: it
    trains a trial, then the one held, whenever this run stops.)"""
    hold = Hold()
    setup = _setup(pg_url, hold, Budget(max_trials=2, wall_time_s=100.0))
    other, theirs = _start_other_worker(setup, hold, held=2)
    try:
        ours = run_study(**{**setup, "budget": Budget(max_trials=None, wall_time_s=0.3)})
        trials = _with_study(pg_url, lambda s: s.get_trials(deepcopy=False))
    finally:
        hold.release.set()
        other.join(HOLD_LIMIT_S)
    [held] = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert held.user_attrs.get("outcome") is None
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert ours.stopped_by == "wall_time" and ours.n_trials == len(complete) >= 1
    assert ours.best_value == min(t.value for t in complete)
    [their_result] = theirs
    assert isinstance(their_result, TuningResult), their_result
