"""A study no trial completed says what happened to its trials: how many were vetoed
for their fold spread (and over which limit), rejected for their serving cost (the
ceiling and a violation) or failed (the first error). It said only "see the trials'
`error` attributes", which vetoed and rejected trials do not have."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np
import optuna
import pytest
from retune_data import binary, small_space

from monitor.objectives import LogLoss, make_objective
from retune import Budget, StudyError, run_study
from retune.cv import StratifiedKFoldCV
from retune.warmstart import CostConstraint, History


def _fail(tmp_path: Any, **overrides: Any) -> tuple[str, list[optuna.trial.FrozenTrial]]:
    """Run a study expected to have no winner: its error message, and its trials."""
    x, y = binary(seed=4, n=90)
    storage = str(tmp_path / "journal.log")
    kwargs: dict[str, Any] = {
        "storage": storage,
        "study_name": "s",
        "space": small_space(),
        "x": x,
        "y": y,
        "objective": make_objective("log_loss"),
        "cv": StratifiedKFoldCV(n_splits=2),
        "budget": Budget(max_trials=3),
        "plan": None,
        "seed": 0,
    }
    with pytest.raises(StudyError) as caught:
        run_study(**{**kwargs, **overrides})
    backend = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    trials = optuna.load_study(study_name="s", storage=backend).get_trials()
    message = str(caught.value)
    assert "`error` attributes" not in message
    return message, trials


def _outcomes(trials: list[optuna.trial.FrozenTrial]) -> Counter[str]:
    return Counter(t.user_attrs["outcome"] for t in trials if "outcome" in t.user_attrs)


def _g(value: float) -> str:
    return re.escape(f"{value:.2g}")


def test_every_trial_vetoed_names_the_count_the_spreads_and_the_limit(tmp_path: Any) -> None:
    message, trials = _fail(tmp_path, cv=StratifiedKFoldCV(n_splits=2, max_fold_spread=1e-9))
    assert _outcomes(trials) == {"vetoed": 3}
    spreads = sorted(t.user_attrs["fold_spread"] for t in trials)
    assert re.search(
        rf"no trial completed: all 3 trials were vetoed for their fold spread "
        rf"\({_g(spreads[0])} to {_g(spreads[-1])} > max_fold_spread 1e-09\)",
        message,
    ), message


def test_every_configuration_over_the_cost_ceiling_names_it_and_a_violation(
    tmp_path: Any,
) -> None:
    plan = CostConstraint(max_latency_p99_s=0.005).plan(History(), small_space())
    message, trials = _fail(tmp_path, plan=plan, cost_predictor=lambda params: (1.0, 1e6))
    n = _outcomes(trials)["cost_rejected"]
    assert n > 0 and set(_outcomes(trials)) == {"cost_rejected"}
    assert (
        f"no trial completed: all {n} configurations were rejected before training for "
        "their predicted serving cost (ceiling max_latency_p99_s 0.005 s; first: "
        "predicted p99 latency 1s > 0.005s)"
    ) in message, message


def test_vetoed_and_cost_rejected_trials_are_both_named(tmp_path: Any) -> None:
    plan = CostConstraint(max_memory_bytes=1000).plan(History(), small_space())

    def predict(params: Any) -> tuple[float, float]:
        return (0.001, 1e6 if params["estimator"] == "gradient_boosting" else 10.0)

    message, trials = _fail(
        tmp_path,
        plan=plan,
        cost_predictor=predict,
        cv=StratifiedKFoldCV(n_splits=2, max_fold_spread=1e-9),
    )
    counts = _outcomes(trials)
    assert counts["vetoed"] == 3 and counts["cost_rejected"] > 0, counts
    total = counts["vetoed"] + counts["cost_rejected"]
    assert message.startswith(f"study 's': no trial completed of {total} trials: "), message
    assert "3 vetoed for their fold spread (" in message
    assert "> max_fold_spread 1e-09)" in message
    assert (
        f"{counts['cost_rejected']} rejected before training for their predicted serving "
        "cost (ceiling max_memory_bytes 1000 B; first: predicted memory 1e+06 B > 1000 B)"
    ) in message, message


def test_every_trial_failing_names_the_first_error(tmp_path: Any) -> None:
    class IndexingLogLoss(LogLoss):
        def value(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
            if np.ptp(np.asarray(y_pred), axis=0).any():  # a model's, not a constant
                raise IndexError("index 7 is out of bounds for axis 1")
            return super().value(y_true, y_pred)

    message, trials = _fail(tmp_path, objective=IndexingLogLoss())
    assert _outcomes(trials) == {"error": 3}
    assert (
        "no trial completed: all 3 trials failed (first: configuration failed: IndexError: "
        "index 7 is out of bounds for axis 1)"
    ) in message, message
