"""A study's trials sample with randomness derived from the tuning seed and the trial's
number: a single-worker study stopped and resumed proposes, trial by trial, what the
uninterrupted one did (a resumed or joined study sampled with a random seed recorded
nowhere, so a job stopped after 3 of 8 trials and resumed picked other trials 3-7, and a
different winner, on identical data). Workers joining one study still propose different
points: their trials' numbers differ."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from retune_data import binary

from monitor.objectives import make_objective
from retune import Budget, TuningResult, run_study
from retune._optuna import TrialHandle, close_storage, make_storage, open_study
from retune.cv import StratifiedKFoldCV
from retune.space import SearchSpace, parse_search_space
from retune.warmstart import NumericBound, WarmStartPlan

STUDY = "s"
SEED = 7
#: Past TPE's ten random start-up trials, so that its model-based draws are replayed too.
TRIALS = 12
STOP_AFTER = 3

SPACE: dict[str, Any] = {
    "name": "logistic",
    "params": {
        "scaler": {"type": "categorical", "choices": ["none", "standard"]},
        "estimator": {
            "type": "categorical",
            "choices": ["logistic"],
            "when": {"logistic": {"C": {"type": "float", "low": 1e-3, "high": 10.0, "log": True}}},
        },
    },
}

#: A plan narrowing the draws (a box, a categorical box), enqueueing a configuration and
#: letting every third trial explore: the plan sampler's own draws are replayed too.
PLAN = WarmStartPlan(
    strategies=("test",),
    enqueue=({"scaler": "standard", "estimator": "logistic", "C": 1.0},),
    numeric_box=(NumericBound(name="C", low=0.01, high=1.0),),
    choice_box={"scaler": ("standard",)},
    explore_every=3,
)


def _space() -> SearchSpace:
    return parse_search_space(SPACE)


def _run(storage: str, max_trials: int, plan: WarmStartPlan | None) -> TuningResult:
    x, y = binary(seed=4, n=120)
    return run_study(
        storage=storage,
        study_name=STUDY,
        space=_space(),
        x=x,
        y=y,
        objective=make_objective("log_loss"),
        cv=StratifiedKFoldCV(n_splits=2),
        budget=Budget(max_trials=max_trials),
        plan=plan,
        seed=SEED,
    )


def _study(storage: str) -> tuple[dict[int, dict[str, Any]], dict[str, Any]]:
    """Study ``STUDY``'s params by trial number (of the trials that ran), and its user
    attributes."""
    backend = make_storage(storage, heartbeat_interval=None)
    try:
        study = optuna.load_study(study_name=STUDY, storage=backend)
        params = {t.number: dict(t.params) for t in study.trials if t.state.is_finished()}
        return params, dict(study.user_attrs)
    finally:
        close_storage(backend)


@pytest.mark.parametrize("plan", [None, PLAN], ids=["no_plan", "plan"])
def test_a_resumed_study_proposes_the_uninterrupted_study_s_trials(
    tmp_path: Path, plan: WarmStartPlan | None
) -> None:
    whole, resumed = str(tmp_path / "whole.log"), str(tmp_path / "resumed.log")
    uninterrupted = _run(whole, TRIALS, plan)
    stopped = _run(resumed, STOP_AFTER, plan)
    assert (stopped.n_trials, stopped.stopped_by) == (STOP_AFTER, "max_trials")
    finished = _run(resumed, TRIALS, plan)
    assert finished.n_trials == TRIALS

    expected, attrs = _study(whole)
    got, resumed_attrs = _study(resumed)
    assert sorted(expected) == list(range(TRIALS))
    for number in range(TRIALS):
        assert got.get(number) == expected[number], f"trial {number}"
    assert (finished.best_params, finished.best_value) == (
        uninterrupted.best_params,
        uninterrupted.best_value,
    )
    # the derivation is recorded with the study, so that a report can show it
    recorded = attrs["sampler_seed"]
    assert recorded == resumed_attrs["sampler_seed"]
    assert recorded["seed"] == SEED
    assert "SeedSequence" in recorded["rule"]
    json.dumps(recorded)  # a user attribute: JSON
    if plan is not None:
        assert expected[0] == dict(plan.enqueue[0])  # the enqueued configuration first


def _take_turns(storage: str, workers: int, turns: int) -> list[dict[str, Any]]:
    """Open study ``STUDY`` ``workers`` times (as that many workers joining it) and let
    each run one trial in turn, ``turns`` times round; the params of its trials, in order
    of their numbers."""
    handles = [
        open_study(
            storage=storage,
            study_name=STUDY,
            seed=SEED,
            plan=None,
            pruner="none",
            heartbeat_interval=None,
        )
        for _ in range(workers)
    ]
    try:
        for _ in range(turns):
            for handle in handles:
                ran: list[int] = []

                def objective(trial: TrialHandle, ran: list[int] = ran) -> float:
                    ran.append(trial.number)
                    trial.suggest_categorical("scaler", ("none", "standard"))
                    return trial.suggest_float("C", 1e-3, 10.0, step=None, log=True)

                handle.optimize(objective, should_stop=lambda ran=ran: "turn" if ran else None)
        records = handles[0].trials()
    finally:
        for handle in handles:
            handle.close()
    assert [r.number for r in records] == list(range(workers * turns))
    return [dict(r.params) for r in records]


def test_workers_joining_a_study_propose_different_points(tmp_path: Path) -> None:
    """Two workers taking turns in one study propose different points, the points one
    worker alone proposes in its trials of those numbers: its trials' start-up draws depend
    on their numbers only (a seed shared by the workers' samplers, not derived per trial,
    had the second worker's first trial repeat the first worker's)."""
    joined = _take_turns(str(tmp_path / "joined.log"), workers=2, turns=3)
    alone = _take_turns(str(tmp_path / "alone.log"), workers=1, turns=6)
    proposed = [json.dumps(p, sort_keys=True) for p in joined]
    assert len(set(proposed)) == len(proposed), joined
    assert joined == alone
