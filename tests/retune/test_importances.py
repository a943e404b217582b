"""fANOVA importances of a finished study: seeded shares of the parameters its completed
trials all have, or no shares and the reason why, never a failed job."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from retune import MIN_IMPORTANCE_TRIALS, StudyError, StudyImportances, study_importances


def _study(tmp_path: Path, objective: Callable[[optuna.Trial], float], n_trials: int = 20) -> str:
    """A finished study named ``s`` in a journal file, its trials drawn at random
    (seeded); returns the storage."""
    storage = str(tmp_path / "journal.log")
    study = optuna.create_study(
        study_name="s",
        storage=JournalStorage(JournalFileBackend(storage)),
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    study.optimize(objective, n_trials=n_trials)
    return storage


def _x_matters(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    y = trial.suggest_float("y", 0.0, 1.0)
    kind = trial.suggest_categorical("kind", ["a", "b"])
    return 10 * (x - 0.3) ** 2 + 0.01 * y + (2.0 if kind == "b" else 0.0)


def test_importances_of_a_finished_study_rank_the_parameter_its_loss_depends_on_first(
    tmp_path: Path,
) -> None:
    storage = _study(tmp_path, _x_matters)
    first = study_importances(storage, "s", seed=3)
    assert isinstance(first, StudyImportances) and first.reason is None
    assert first.n_complete == 20 and first.not_rated == ()
    assert list(first.shares) == ["x", "kind", "y"]  # largest share first
    assert sum(first.shares.values()) == pytest.approx(1.0)
    assert first.shares["x"] > 0.5 and first.shares["y"] < 0.1
    # seeded: the same study gives the same shares, to the last digit
    assert study_importances(storage, "s", seed=3) == first
    assert first.to_dict() == {
        "method": "fanova",
        "seed": 3,
        "n_complete": 20,
        "shares": dict(first.shares),
        "not_rated": [],
        "reason": None,
    }


def test_parameters_not_in_every_completed_trial_are_named_and_not_rated(
    tmp_path: Path,
) -> None:
    """fANOVA rates the parameters every trial has: a conditional one (an estimator's own
    parameter) is listed as not rated rather than silently missing."""

    def conditional(trial: optuna.Trial) -> float:
        model = trial.suggest_categorical("model", ["p", "q"])
        s = trial.suggest_float("s", 0.0, 1.0)
        own = trial.suggest_float("alpha" if model == "p" else "beta", 0.0, 1.0)
        return s + 0.1 * own + (1.0 if model == "q" else 0.0)

    result = study_importances(_study(tmp_path, conditional), "s", seed=0)
    assert result.reason is None
    assert set(result.shares) == {"model", "s"}
    assert result.not_rated == ("alpha", "beta")


def test_a_study_with_too_few_completed_trials_has_no_importances_and_says_why(
    tmp_path: Path,
) -> None:
    """Pruned trials have no loss to share out: nine completed ones are too few."""

    def some_pruned(trial: optuna.Trial) -> float:
        value = _x_matters(trial)
        if trial.number % 4 == 3:
            raise optuna.TrialPruned()
        return value

    result = study_importances(_study(tmp_path, some_pruned, n_trials=12), "s", seed=0)
    assert result.shares == {} and result.n_complete == 9
    assert result.reason == (
        f"9 completed trials, fewer than the {MIN_IMPORTANCE_TRIALS} fANOVA needs for shares "
        "that are more than noise"
    )


def test_a_study_varying_a_single_parameter_has_no_importances_and_says_why(
    tmp_path: Path,
) -> None:
    def one(trial: optuna.Trial) -> float:
        trial.suggest_categorical("fixed", ["only"])
        return trial.suggest_float("x", 0.0, 1.0) ** 2

    result = study_importances(_study(tmp_path, one, n_trials=12), "s", seed=0)
    assert result.shares == {} and result.n_complete == 12
    assert result.reason == (
        "only `x` varies over the 12 completed trials (a lone share is 1 by definition)"
    )


def test_a_study_whose_losses_do_not_vary_has_no_importances_and_says_why(
    tmp_path: Path,
) -> None:
    """fANOVA raises RuntimeError ("zero total variance") where no tree can split."""

    def flat(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_float("y", 0.0, 1.0)
        return 1.0

    result = study_importances(_study(tmp_path, flat, n_trials=12), "s", seed=0)
    assert result.shares == {}
    assert result.reason == (
        "the 12 completed trials' losses do not vary with `x`, `y` (fANOVA finds zero variance)"
    )


def test_a_study_whose_losses_overflow_fanova_has_no_importances_and_says_why(
    tmp_path: Path,
) -> None:
    """Finite losses near 1e160 overflow fANOVA's squares into NaN shares, which a
    version's details refuse: the job that computed them failed to register its winner."""

    def huge(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        y = trial.suggest_float("y", 0.0, 1.0)
        return 1e160 * (1.0 + x + 0.1 * y)

    result = study_importances(_study(tmp_path, huge, n_trials=12), "s", seed=0)
    assert result.shares == {}
    assert result.reason is not None and "not finite" in result.reason


def test_importances_of_a_study_that_does_not_exist_are_a_study_error(tmp_path: Path) -> None:
    storage = _study(tmp_path, _x_matters, n_trials=1)
    with pytest.raises(StudyError) as err:
        study_importances(storage, "nope", seed=0)
    assert err.value.study_name == "nope"
    assert "computing importances failed" in str(err.value)
