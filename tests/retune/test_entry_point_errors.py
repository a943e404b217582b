"""retune's entry points refuse bad input with retune's errors, never a raw numpy or
scikit-learn one: :func:`retune.run_study` before it opens the study,
:func:`retune.refit_and_export` at its refit, :class:`retune.Budget` when built."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from retune_data import binary, small_space

from monitor.objectives import make_objective
from retune import Budget, ExportError, RetuneError, StudyError, refit_and_export, run_study
from retune.cv import KFoldCV

LOGISTIC = {"estimator": "logistic", "C": 1.0}


def _mismatched(x: np.ndarray, y: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """Windows whose labels do not fit their rows, with what the refusal must say."""
    return {
        "y_shorter": (x, y[:50], r"`x` has 150 rows but `y` has 50"),
        "y_longer": (x, np.r_[y, y], r"`x` has 150 rows but `y` has 300"),
        "string_labels": (x, np.where(y == 1, "yes", "no"), r"`y` must hold numbers, got <U3"),
        "two_column_labels": (x, np.c_[y, y], r"`y` must be one-dimensional, got shape \(150, 2\)"),
    }


@pytest.mark.parametrize("case", ["y_shorter", "y_longer", "string_labels", "two_column_labels"])
def test_run_study_refuses_labels_that_do_not_fit_the_rows_before_any_trial(
    tmp_path: Path, case: str
) -> None:
    x, y = binary(seed=4, n=150)
    xx, yy, message = _mismatched(x, y)[case]
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    with pytest.raises(StudyError, match=message) as info:
        run_study(
            storage=storage,
            study_name=case,
            space=small_space(),
            x=xx,
            y=yy,
            objective=make_objective("log_loss"),
            cv=KFoldCV(n_splits=3),
            budget=Budget(max_trials=3),
            plan=None,
            seed=0,
        )
    assert info.value.study_name == case
    # refused up front: the study was never opened, so no trial ran or was stored
    assert optuna.get_all_study_summaries(storage=storage) == []


def _refit_failures(x: np.ndarray, y: np.ndarray) -> dict[str, tuple[Any, np.ndarray, str]]:
    """Refits scikit-learn refuses, with what the translated error must say."""
    nan_label = np.where(np.arange(len(y)) == 3, np.nan, y)
    return {
        "one_class": (LOGISTIC, np.zeros(len(y), dtype=np.int64), "only one class"),
        "negative_C": ({**LOGISTIC, "C": -1.0}, y, r"'C' parameter of LogisticRegression"),
        "nan_label": (LOGISTIC, nan_label, "Input y contains NaN"),
        "y_shorter": (LOGISTIC, y[:100], r"`x` 240 rows, `y` 100"),
    }


@pytest.mark.parametrize("case", ["one_class", "negative_C", "nan_label", "y_shorter"])
def test_refit_and_export_translates_scikit_learn_errors_into_an_export_error(case: str) -> None:
    x, y = binary(seed=6)
    params, labels, detail = _refit_failures(x, y)[case]
    with pytest.raises(ExportError, match="could not be refitted on the training window") as info:
        refit_and_export(params, x, labels)
    assert re.search(detail, str(info.value)), str(info.value)
    assert "logistic" in str(info.value)
    # scikit-learn's own error is kept as the cause, for the traceback
    cause = info.value.__cause__
    assert isinstance(cause, ValueError) and not isinstance(cause, RetuneError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param(
            {"max_trials": None},
            "needs at least one of `max_trials`, `wall_time_s`, `cpu_time_s`",
            id="no_limit",
        ),
        pytest.param({"max_trials": 0}, r"`max_trials` must be >= 1, got 0", id="max_trials"),
        pytest.param({"wall_time_s": -1.0}, r"`wall_time_s` must be > 0, got -1.0", id="wall"),
        pytest.param({"cpu_time_s": 0.0}, r"`cpu_time_s` must be > 0, got 0.0", id="cpu"),
        pytest.param({"patience": 0}, r"`patience` must be >= 1, got 0", id="patience"),
        pytest.param(
            {"min_relative_improvement": 1.0},
            r"`min_relative_improvement` must be in \[0, 1\), got 1.0",
            id="min_relative_improvement",
        ),
        pytest.param({"pruner": "hyperband"}, r"`pruner` must be one of", id="pruner"),
    ],
)
def test_an_invalid_budget_is_a_retune_error_and_still_a_value_error(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(RetuneError, match=message) as info:
        Budget(**kwargs)
    assert isinstance(info.value, ValueError)  # callers catching ValueError still do
