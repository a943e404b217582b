"""The plan-aware sampler: a warm-start plan's box, frozen values and choice restriction
hold in every trial but the exploring ones, which sample the full space."""

from __future__ import annotations

from typing import Any

import optuna

from retune._optuna import PlanSampler
from retune.warmstart import NumericBound, WarmStartPlan

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
