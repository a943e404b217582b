"""The plan-aware sampler: a warm-start plan's box, frozen values and choice restriction
hold in every trial but the exploring ones, which sample the full space."""

from __future__ import annotations

from typing import Any

import optuna

from retune._optuna import PlanSampler, TrialHandle
from retune.space import parse_search_space
from retune.warmstart import Combined, History, HistoryTrial, NumericBound, WarmStartPlan

PLAN = WarmStartPlan(
    numeric_box=(NumericBound(name="C", low=50.0, high=60.0),),
    choice_box={"estimator": ("logistic",)},
    frozen={"scaler": "robust"},
    explore_every=3,
)


def _sample(plan: WarmStartPlan, n_trials: int) -> list[dict[str, Any]]:
    """Ask ``n_trials`` trials of a seeded random base sampler narrowed by ``plan``."""
    sampler = PlanSampler(optuna.samplers.RandomSampler(seed=0), plan, seed=0)
    study = optuna.create_study(sampler=sampler)
    drawn = []
    for _ in range(n_trials):
        trial = study.ask()
        drawn.append(
            {
                "number": trial.number,
                "C": trial.suggest_float("C", 1e-4, 100.0, log=True),
                "scaler": trial.suggest_categorical("scaler", ["none", "standard", "robust"]),
                "estimator": trial.suggest_categorical("estimator", ["logistic", "forest"]),
            }
        )
        study.tell(trial, 1.0)
    return drawn


def test_non_exploring_trials_sample_inside_the_box_with_frozen_and_restricted_choices() -> None:
    drawn = _sample(PLAN, n_trials=9)
    boxed = [d for d in drawn if d["number"] not in (2, 5, 8)]
    assert [d["number"] for d in boxed] == [0, 1, 3, 4, 6, 7]
    assert all(50.0 <= d["C"] <= 60.0 for d in boxed)
    assert {d["scaler"] for d in boxed} == {"robust"}
    assert {d["estimator"] for d in boxed} == {"logistic"}


def test_every_explore_every_th_trial_samples_the_full_space() -> None:
    """explore_every=3: trials 2, 5 and 8 (the 3rd, 6th, 9th) explore, and only they."""
    drawn = _sample(PLAN, n_trials=9)
    outside_box = [d["number"] for d in drawn if not 50.0 <= d["C"] <= 60.0]
    other_family = [d["number"] for d in drawn if d["estimator"] != "logistic"]
    assert outside_box == [2, 5, 8]
    assert other_family == [2, 5, 8]  # the seeded draws leave the choice box there too


def test_a_box_holding_one_grid_point_samples_that_point_not_the_full_range() -> None:
    """A box [42, 78] on a grid of step 20 holds one point, 60 (and [0.25, 0.35] on a grid
    of tenths holds 0.3): the sampler took it for no box and drew from 20..200."""
    plan = WarmStartPlan(
        numeric_box=(
            NumericBound(name="n", low=42.0, high=78.0),
            NumericBound(name="f", low=0.25, high=0.35),
        )
    )
    study = optuna.create_study(
        sampler=PlanSampler(optuna.samplers.RandomSampler(seed=0), plan, seed=0)
    )
    drawn = set()
    for _ in range(8):
        trial = study.ask()
        drawn.add(
            (
                trial.suggest_int("n", 20, 200, step=20),
                trial.suggest_float("f", 0.1, 0.7, step=0.1),
            )
        )
        study.tell(trial, 1.0)
    assert drawn == {(60, 0.3)}


def test_a_learned_box_on_a_step_grid_samples_only_the_range_it_records() -> None:
    """The learned box of gb_n_estimators (20..80 step 20) around the best configurations'
    40 was recorded as [25, 55], and the non-exploring trials drew 20, 40, 60 and 80."""
    space = parse_search_space(
        {
            "name": "grid",
            "params": {
                "estimator": {
                    "type": "categorical",
                    "choices": ["gradient_boosting"],
                    "when": {
                        "gradient_boosting": {
                            "gb_n_estimators": {"type": "int", "low": 20, "high": 80, "step": 20}
                        }
                    },
                }
            },
        }
    )
    trials = [
        HistoryTrial(
            study_name="old",
            number=i,
            value=float(i),
            params={
                "estimator": "gradient_boosting",
                "gb_n_estimators": 40 if i < 5 else [20, 60, 80][i % 3],
            },
        )
        for i in range(20)
    ]
    plan = Combined().plan(History.from_trials(trials), space)
    box = plan.box_for("gb_n_estimators")
    assert box is not None
    study = optuna.create_study(
        sampler=PlanSampler(optuna.samplers.TPESampler(seed=0), plan, seed=0)
    )
    boxed = set()
    for _ in range(12):
        trial = study.ask()
        drawn = space.sample(TrialHandle(trial))
        if (
            plan.explore_every is None
            or trial.number % plan.explore_every != plan.explore_every - 1
        ):
            boxed.add(drawn["gb_n_estimators"])
        study.tell(trial, float(trial.number % 5))
    grid = {v for v in range(20, 81, 20) if box.low <= v <= box.high}
    assert boxed and boxed <= grid and len(grid) >= 2
    assert (box.low, box.high) == (min(grid), max(grid))  # the record is the range searched
