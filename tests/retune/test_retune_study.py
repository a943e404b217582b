from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from retune_data import SMALL_SPACE, binary, regression, small_space
from retune_worker import SlowFolds

import retune
import retune.cv
import retune.space
import retune.warmstart
from monitor.objectives import LogLoss, make_objective
from retune import (
    Budget,
    BudgetTracker,
    CVError,
    ParityError,
    StudyError,
    load_history,
    refit_and_export,
    run_study,
)
from retune._runs import this_host
from retune.cv import StratifiedKFoldCV
from retune.warmstart import CostConstraint, History, WarmStartPlan


def _run(tmp_path: Any, name: str = "s", **overrides: Any) -> retune.TuningResult:
    x, y = overrides.pop("data", binary(seed=4, n=150))
    kwargs: dict[str, Any] = {
        "storage": str(tmp_path / "journal.log"),
        "study_name": name,
        "space": small_space(),
        "x": x,
        "y": y,
        "objective": make_objective("log_loss"),
        "cv": StratifiedKFoldCV(n_splits=2),
        "budget": Budget(max_trials=5),
        "plan": None,
        "seed": 0,
    }
    return run_study(**{**kwargs, **overrides})


# retune and retune.space are lazy fronts: tests/test_lazy_fronts.py
@pytest.mark.parametrize("package", [retune.cv, retune.warmstart])
def test_all_lists_exactly_the_public_names(package: Any) -> None:
    public = {
        n
        for n, v in vars(package).items()
        if not n.startswith("_") and not inspect.ismodule(v) and n != "annotations"
    }
    assert set(package.__all__) == public


def test_max_trials_stops_and_a_second_call_resumes_the_same_study(tmp_path: Any) -> None:
    first = _run(tmp_path)
    assert (first.n_trials, first.stopped_by) == (5, "max_trials")
    second = _run(tmp_path, budget=Budget(max_trials=8))
    assert second.n_trials == 8 and second.best_value <= first.best_value


def test_trials_record_dataset_version_and_fold_scores(tmp_path: Any) -> None:
    result = _run(tmp_path)
    assert result.dataset_version.startswith("sha256:")
    assert len(result.fold_scores_of_best.scores) == 2
    assert result.fold_scores_of_best.mean == pytest.approx(result.best_value)


def test_joining_with_other_data_is_refused(tmp_path: Any) -> None:
    _run(tmp_path)
    with pytest.raises(StudyError, match="tuned on dataset sha256:"):
        _run(tmp_path, data=binary(seed=5, n=150))


def test_no_improvement_stops_early() -> None:
    tracker = BudgetTracker(Budget(max_trials=100, patience=3, min_relative_improvement=0.01))
    assert tracker.stop_reason(4, [1.0, 0.9, 0.895, 0.894]) is None  # 1.0 -> 0.894 over 3 trials
    assert tracker.stop_reason(5, [1.0, 0.9, 0.899, 0.898, 0.8979]) == "no_improvement"
    assert tracker.stop_reason(5, [1.0, 0.9, 0.899, 0.898, 0.5]) is None


def test_no_improvement_stops_on_flat_losses_under_the_default_min_relative_improvement() -> None:
    tracker = BudgetTracker(Budget(max_trials=100, patience=2))  # min_relative_improvement=0
    assert tracker.stop_reason(3, [1.0, 1.0, 1.0]) == "no_improvement"
    assert tracker.stop_reason(3, [1.0, 1.0, 0.999]) is None


def test_no_improvement_stops_a_maximised_objective_whose_negative_losses_stall() -> None:
    """Accuracy 0.5000 -> 0.5002 as losses (-accuracy) is 0.04 % better, under 1 %; the
    improvement is relative to the loss's magnitude, whatever its sign."""
    tracker = BudgetTracker(Budget(max_trials=100, patience=2, min_relative_improvement=0.01))
    assert tracker.stop_reason(3, [-0.5, -0.5001, -0.5002]) == "no_improvement"
    assert tracker.stop_reason(3, [-0.5, -0.55, -0.6]) is None  # 20 % better


def test_wall_and_cpu_budgets_use_the_injected_clocks() -> None:
    now = {"wall": 0.0, "cpu": 0.0}
    tracker = BudgetTracker(
        Budget(max_trials=None, wall_time_s=10, cpu_time_s=5),
        clock=lambda: now["wall"],
        cpu_clock=lambda: now["cpu"],
    )
    assert tracker.stop_reason(1, [1.0]) is None
    now["cpu"] = 5.0
    assert tracker.stop_reason(1, [1.0]) == "cpu_time"
    now["wall"] = 10.0
    assert tracker.stop_reason(1, [1.0]) == "wall_time"


def test_no_improvement_stops_a_real_study(tmp_path: Any) -> None:
    result = _run(tmp_path, budget=Budget(max_trials=40, patience=2, min_relative_improvement=0.5))
    assert result.stopped_by == "no_improvement" and result.n_trials < 40


def test_cpu_budget_stops_a_real_study(tmp_path: Any) -> None:
    # the budget also counts the study's set-up, so leave room for at least one trial
    result = _run(tmp_path, budget=Budget(max_trials=None, cpu_time_s=0.3))
    assert result.stopped_by == "cpu_time" and result.n_trials >= 1 and result.cpu_s >= 0.3


# five close configurations and a bad one last: a pruner stops the bad one at a fold
_PRUNABLE = WarmStartPlan(
    enqueue=tuple(
        {"scaler": "none", "estimator": "logistic", "C": c}
        for c in (1.0, 1.01, 1.02, 1.03, 1.04, 1e-3)
    )
)


def test_fold_pruning_prunes_bad_trials(tmp_path: Any) -> None:
    result = _run(
        tmp_path,
        plan=_PRUNABLE,
        cv=StratifiedKFoldCV(n_splits=3),
        budget=Budget(max_trials=6, pruner="median"),
    )
    assert result.n_pruned >= 1


def test_cost_constraint_rejects_before_training_and_counts(tmp_path: Any) -> None:
    plan = CostConstraint(max_latency_p99_s=0.005).plan(History(), small_space())
    trained: list[str] = []

    def predict(params: Any) -> tuple[float, float]:
        trained.append(params["estimator"])
        return (0.02 if params["estimator"] == "gradient_boosting" else 0.001, 1e6)

    result = _run(tmp_path, plan=plan, cost_predictor=predict, budget=Budget(max_trials=10))
    assert result.n_cost_rejected == trained.count("gradient_boosting") > 0
    assert result.best_params["estimator"] == "logistic"


def test_spread_veto_fails_the_configuration(tmp_path: Any) -> None:
    with pytest.raises(StudyError, match="no trial completed"):
        _run(tmp_path, cv=StratifiedKFoldCV(n_splits=2, max_fold_spread=1e-9))
    assert len(load_history(str(tmp_path / "journal.log"), ["s"])) == 0  # all vetoed = FAIL


def test_refit_and_export_checks_parity_on_a_holdout() -> None:
    x, y = binary(seed=6, missing=0.05)
    exported = refit_and_export(
        {"estimator": "gradient_boosting", "missing": "indicator", "gb_n_estimators": 10},
        x,
        y,
        holdout_fraction=0.25,
        seed=0,
    )
    assert exported.parity_error <= 1e-4 and exported.n_features == x.shape[1]
    assert exported.onnx[:2] and exported.params["estimator"] == "gradient_boosting"


def test_mismatched_conversion_fails_parity_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Export a *different* model (another C) under the refit's name: the gate must catch it."""
    x, y = binary(seed=6)
    other = retune.space.fit_pipeline({"estimator": "logistic", "C": 1e-3}, x, y, seed=0)
    real_to_onnx = retune._refit.to_onnx  # type: ignore[attr-defined]
    monkeypatch.setattr(
        retune._refit,
        "to_onnx",  # type: ignore[attr-defined]
        lambda est, n, **kw: real_to_onnx(other, n, **kw),
    )
    with pytest.raises(ParityError, match="differs from the estimator") as info:
        refit_and_export({"estimator": "logistic", "C": 10.0}, x, y, tolerance=1e-4)
    assert info.value.max_abs_diff > 1e-2


def test_result_is_frozen(tmp_path: Any) -> None:
    result = _run(tmp_path)
    with pytest.raises(AttributeError):
        result.best_value = 0.0  # type: ignore[misc]
    assert np.isfinite(result.wall_s) and result.plan is None


def test_a_regression_study_cross_validates_refits_and_exports(tmp_path: Any) -> None:
    """CV scored `predict_proba` and the refit's parity holdout was stratified on the
    label: both fail for a regressor, so every regression job failed."""
    x, y = regression(seed=5, n=300)
    space = retune.space.parse_search_space(
        {
            "name": "reg",
            "params": {
                "estimator": {
                    "type": "categorical",
                    "choices": ["ridge", "gradient_boosting_regressor"],
                    "when": {
                        "ridge": {"alpha": {"type": "float", "low": 0.01, "high": 10.0}},
                        "gradient_boosting_regressor": {
                            "gb_n_estimators": {"type": "int", "low": 10, "high": 20}
                        },
                    },
                }
            },
        }
    )
    result = _run(
        tmp_path,
        data=(x, y),
        space=space,
        objective=make_objective("rmse", task="regression"),
        cv=retune.cv.TimeSeriesCV(n_splits=3),
        budget=Budget(max_trials=4),
    )
    assert result.n_trials == 4 and 0 < result.best_value < 3
    exported = refit_and_export(dict(result.best_params), x, y, tolerance=1e-4)
    assert exported.parity_error <= 1e-4


def test_an_interrupted_study_stops_after_the_running_trial(tmp_path: Any) -> None:
    asked: list[int] = []

    def interrupted() -> bool:
        asked.append(1)
        return len(asked) > 2  # after two trials

    result = _run(tmp_path, budget=Budget(max_trials=50), interrupted=interrupted)
    assert result.stopped_by == "interrupted" and result.n_trials == 2


def test_workers_joining_a_study_with_a_plan_propose_different_points(tmp_path: Any) -> None:
    """Adopting the stored plan rebuilt each joiner's sampler with one fixed seed, so every
    joining worker proposed the same configurations."""
    from retune._optuna import TrialHandle, open_study
    from retune._settle import settle_plan
    from retune.warmstart import NumericBound

    space = small_space()
    storage = f"sqlite:///{tmp_path}/optuna.db"
    plan = WarmStartPlan(numeric_box=(NumericBound(name="C", low=0.01, high=100.0),))
    proposals = []
    for _ in range(3):  # the creator, then two joiners
        handle = open_study(
            storage=storage, study_name="s", seed=0, plan=plan, pruner="none",
            heartbeat_interval=None,
        )  # fmt: skip
        settle_plan(handle, plan, "v")
        # several points each: one point of this small space repeats by chance (~1 in 50)
        proposals.append([space.sample(TrialHandle(handle._study.ask())) for _ in range(4)])
    assert proposals[1] != proposals[2]


@pytest.mark.parametrize("scale", [1e3, 1e5])
def test_a_regressor_s_parity_is_relative_to_its_predictions(scale: float) -> None:
    """float32 rounding of a tree regressor predicting in the thousands exceeds 1e-4
    absolute: every job whose winner was a boosted or forest regressor failed parity."""
    x, y = regression(seed=3)
    exported = refit_and_export(
        {"estimator": "gradient_boosting_regressor"}, x, scale * (y + 5.0), tolerance=1e-4
    )
    assert exported.parity_error <= 1e-4


def test_a_window_the_cv_cannot_split_fails_before_any_trial(tmp_path: Any) -> None:
    """A class with fewer rows than folds made every trial fail at the split: the whole
    budget burned, and the job said only that no trial completed."""
    x, y = binary(seed=4, n=150)
    y = np.zeros_like(y)
    y[:2] = 1  # the rarer class has 2 rows, the CV wants 3 folds
    with pytest.raises(StudyError, match="cannot be split") as info:
        _run(tmp_path, data=(x, y), cv=StratifiedKFoldCV(n_splits=3), budget=Budget(max_trials=30))
    assert "rarest" in str(info.value)


@pytest.mark.parametrize("missing", [1, 2])
def test_a_window_missing_a_class_is_not_exported_with_fewer_columns(missing: int) -> None:
    """Without class 1 the refit answered two columns, and class 2's probability sat in
    column 1: read by class index, as P(class 1). Parity compared the two narrow outputs
    and passed."""
    x, y = binary(seed=6)
    y = np.where(y == 1, 2 if missing == 1 else 1, 0)
    with pytest.raises(retune.ExportError, match="no rows of class"):
        refit_and_export({"estimator": "logistic", "C": 1.0}, x, y, n_classes=3)
    exported = refit_and_export({"estimator": "logistic", "C": 1.0}, x, np.where(y > 0, 1, 0))
    assert exported.parity_error <= 1e-4  # all classes there: exported as before
    with pytest.raises(retune.ExportError, match=r"include class\(es\) \[3\]"):
        refit_and_export({"estimator": "logistic", "C": 1.0}, x, np.where(y > 0, 3, 0), n_classes=3)


def test_configurations_rejected_for_cost_do_not_spend_the_trial_budget(tmp_path: Any) -> None:
    """Rejected configurations are never trained, yet counted as trials: a budget of 4
    whose first proposals were all too slow ended the study with nothing trained."""
    plan = CostConstraint(max_latency_p99_s=0.005).plan(History(), small_space())

    def predict(params: Any) -> tuple[float, float]:
        return (0.02 if params["estimator"] == "gradient_boosting" else 0.001, 1e6)

    result = _run(tmp_path, plan=plan, cost_predictor=predict, budget=Budget(max_trials=4))
    trained = result.n_trials - result.n_cost_rejected
    assert trained == 4 and result.best_params["estimator"] == "logistic"


def test_progress_counts_the_trials_that_ran_as_the_result_does(tmp_path: Any) -> None:
    """Progress counted every trial the study held: warm-start configurations still
    WAITING in the queue (a job with a lowered budget reported 5 trials of 2), trials
    given up untrained and those a killed worker left. It counts those that ran, as
    ``TuningResult.n_trials`` does, cost rejections beside. Optuna marks a cost rejection
    PRUNED: progress counted it pruned too, where the result does not."""
    costly = CostConstraint(max_latency_p99_s=0.005).plan(History(), small_space())
    logistic = [{"scaler": "standard", "estimator": "logistic", "C": c} for c in (1, 2, 3, 4)]
    boosted = {"scaler": "none", "estimator": "gradient_boosting", "gb_n_estimators": 5}
    plan = dataclasses.replace(costly, enqueue=({**boosted, "gb_max_depth": 1}, *logistic))

    def predict(params: Any) -> tuple[float, float]:
        return (0.02 if params["estimator"] == "gradient_boosting" else 0.001, 1e6)

    result = _run(tmp_path, plan=plan, cost_predictor=predict, budget=Budget(max_trials=2))
    progress = retune.study_progress(str(tmp_path / "journal.log"), "s")
    assert progress is not None
    assert (result.n_trials, result.n_cost_rejected) == (3, 1)  # 2 configurations still wait
    assert progress.n_trials == 3
    assert progress.n_cost_rejected == 1
    assert progress.n_complete == 2 and progress.n_running == 0
    assert progress.n_pruned == result.n_pruned == 0


def test_a_space_where_every_configuration_is_too_costly_stops(tmp_path: Any) -> None:
    plan = CostConstraint(max_latency_p99_s=0.005).plan(History(), small_space())
    with pytest.raises(StudyError, match="no trial completed"):
        _run(
            tmp_path,
            plan=plan,
            cost_predictor=lambda params: (1.0, 1e6),
            budget=Budget(max_trials=2),
        )


def test_a_study_resumed_after_its_space_was_edited_keeps_its_own_space(tmp_path: Any) -> None:
    """A job put back in the queue (its worker stopped) and resumed after the YAML gained
    a choice failed every new trial: Optuna refuses a categorical whose choices changed."""
    first = _run(tmp_path, budget=Budget(max_trials=2))
    assert first.n_trials == 2
    grown = small_space(
        params={
            **SMALL_SPACE["params"],
            "scaler": {"type": "categorical", "choices": ["none", "standard", "robust"]},
        }
    )
    resumed = _run(tmp_path, space=grown, budget=Budget(max_trials=4))
    assert resumed.n_trials == 4 and resumed.best_params["scaler"] in ("none", "standard")


def test_a_configuration_failing_with_any_exception_is_a_failed_trial_not_a_crash(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A label no class index can hold (NaN cast to int64) made scoring raise IndexError,
    which only ValueError/ArithmeticError were caught for: the first trial's exception
    ended the study with a traceback. Each trial fails, logged with its traceback and
    recorded, and the study ends with its own error. (Such labels are now refused before
    any trial; an objective raising IndexError on a model's predictions stands in.)"""

    class IndexingLogLoss(LogLoss):
        def value(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
            if np.ptp(np.asarray(y_pred), axis=0).any():  # a model's, not a constant
                raise IndexError("index -9223372036854775808 is out of bounds for axis 1")
            return super().value(y_true, y_pred)

    with pytest.raises(StudyError, match="no trial completed"):
        _run(tmp_path, objective=IndexingLogLoss(), budget=Budget(max_trials=3))
    logged = [r for r in caplog.records if r.name == "retune._study" and r.exc_info]
    assert len(logged) == 3 and logged[0].exc_info is not None
    assert logged[0].exc_info[0] is IndexError


@pytest.mark.parametrize("kind", ["sqlite_url", "journal_file"])
def test_an_unreachable_storage_is_a_study_error(tmp_path: Any, kind: str) -> None:
    """SQLAlchemy's and the file system's errors escaped untranslated: a worker printed a
    traceback instead of failing its job with one line."""
    missing = tmp_path / "no" / "such" / "dir"
    storage = f"sqlite:///{missing}/optuna.db" if kind == "sqlite_url" else str(missing / "j.log")
    with pytest.raises(StudyError, match="'s'.*(OperationalError|FileNotFoundError)"):
        _run(tmp_path, storage=storage)
    with pytest.raises(StudyError, match="(OperationalError|FileNotFoundError)"):
        retune.study_progress(storage, "s")
    with pytest.raises(retune.WarmStartError, match="(OperationalError|FileNotFoundError)"):
        load_history(storage, ["s"])


_ACCURACY = {"objective": make_objective("accuracy")}


@pytest.mark.parametrize(
    ("first", "second", "named"),
    [
        ({}, _ACCURACY, "objective"),
        (_ACCURACY, {"objective": make_objective("accuracy", threshold=0.3)}, "objective"),
        ({}, {"cv": StratifiedKFoldCV(n_splits=3)}, "cv"),
        ({}, {"cv": retune.cv.TimeSeriesCV(n_splits=2)}, "cv"),
        ({}, {"seed": 1}, "cv"),
    ],
    ids=["other_objective", "other_objective_parameter", "other_folds", "other_scheme", "seed"],
)
def test_joining_with_another_objective_or_cv_is_refused(
    tmp_path: Any, first: dict[str, Any], second: dict[str, Any], named: str
) -> None:
    """A worker on another machine (`tunewatch worker --job`) with another config joined
    the study: its trials minimised another loss on other folds, and the best was picked
    across incomparable numbers. Only the data were pinned."""
    _run(tmp_path, budget=Budget(max_trials=2), **first)
    with pytest.raises(StudyError, match=f"it was tuned with {named} ") as caught:
        _run(tmp_path, budget=Budget(max_trials=4), **second)
    assert "this worker has" in str(caught.value)
    # the same setup joins and goes on
    assert _run(tmp_path, budget=Budget(max_trials=3), **first).n_trials == 3


def _trained(storage: str, name: str = "s") -> int:
    """Trials of the study that trained (a counted outcome other than a cost rejection;
    not a WAITING retry's, which its killed trial recorded)."""
    from retune._optuna import make_storage

    backend = make_storage(storage, heartbeat_interval=None)
    study = optuna.load_study(study_name=name, storage=backend)
    waiting = optuna.trial.TrialState.WAITING
    outcomes = [t.user_attrs.get("outcome") for t in study.trials if t.state != waiting]
    return sum(o is not None and o != "cost_rejected" for o in outcomes)


def test_max_trials_holds_over_workers_running_at_once(tmp_path: Any) -> None:
    """A trial running in another worker was not counted: three workers with
    ``max_trials=4`` trained 6."""
    storage = str(tmp_path / "journal.log")
    data = binary(seed=4, n=300)
    results: list[retune.TuningResult] = []

    def worker() -> None:
        results.append(_run(tmp_path, data=data, budget=Budget(max_trials=4)))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and _trained(storage) == 4
    assert all(r.stopped_by == "max_trials" for r in results)


@pytest.mark.parametrize("limit", ["wall_time_s", "cpu_time_s"])
def test_a_resumed_study_continues_the_time_budget_it_had_spent(tmp_path: Any, limit: str) -> None:
    """A job queued again (SIGTERM) and resumed by the next worker started its wall and CPU
    clocks from zero, so the study spent its time budget once per resumption."""
    first = _run(tmp_path, budget=Budget(max_trials=3))
    spent = first.wall_s if limit == "wall_time_s" else first.cpu_s
    assert spent > 0
    # half of what the first run spent: used up before the resumption starts a trial
    second = _run(tmp_path, budget=Budget(max_trials=100, **{limit: spent / 2}))
    assert second.stopped_by == limit[: -len("_s")]
    assert _trained(str(tmp_path / "journal.log")) == 3
    assert second.wall_s >= first.wall_s / 2 and second.cpu_s >= first.cpu_s / 2


def test_threads_opening_one_new_rdb_storage_together_all_get_it(tmp_path: Any) -> None:
    """A job's progress thread opens the study's storage while its worker does: on a new
    database each ran Optuna's schema set-up, and the later ones failed with "table
    studies already exists" or a duplicate ``alembic_version`` row (30 of 30 fresh
    SQLite files with 4 threads)."""
    from retune._optuna import make_storage

    for k in range(10):
        url = f"sqlite:///{tmp_path}/optuna-{k}.db"
        failures: list[BaseException] = []

        def open_it(url: str = url, failures: list[BaseException] = failures) -> None:
            try:
                make_storage(url, heartbeat_interval=None)
            except BaseException as exc:  # collected for the assertion below
                failures.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []


def _study_attrs(storage: str, name: str = "s") -> dict[str, Any]:
    from retune._optuna import make_storage

    backend = make_storage(storage, heartbeat_interval=None)
    return dict(optuna.load_study(study_name=name, storage=backend).user_attrs)


def _set_study_attr(storage: str, key: str, value: Any, name: str = "s") -> None:
    from retune._optuna import make_storage

    backend = make_storage(storage, heartbeat_interval=None)
    optuna.load_study(study_name=name, storage=backend).set_user_attr(key, value)


def test_a_resumed_study_counts_the_wall_time_of_parallel_runs_once(tmp_path: Any) -> None:
    """Three workers interrupted after T seconds left 3T of wall time spent: the resumed
    job stopped at once with ``wall_time`` while two thirds of its budget were left."""
    storage = str(tmp_path / "journal.log")
    _run(tmp_path, budget=Budget(max_trials=1))
    # three workers that ran the same 1000 s, and a fourth that ran after them
    for run, (began, ended) in enumerate([(1000.0, 2000.0)] * 3 + [(2500.0, 2600.0)]):
        record = {"started_at": began, "ended_at": ended, "wall_s": ended - began, "cpu_s": 1.0}
        _set_study_attr(storage, f"time_spent:run{run}", record)
    resumed = _run(tmp_path, budget=Budget(max_trials=2, wall_time_s=1500))
    assert resumed.stopped_by == "max_trials" and resumed.n_trials == 2
    assert 1100 <= resumed.wall_s < 1500
    assert resumed.cpu_s >= 4.0  # CPU seconds of parallel workers do add up
    # a run recorded before runs recorded their interval: its seconds are added as they are
    _set_study_attr(storage, "time_spent:legacy", {"wall_s": 400.0, "cpu_s": 0.0})
    assert _run(tmp_path, budget=Budget(max_trials=3, wall_time_s=1500)).stopped_by == "wall_time"


def test_a_resumed_study_counts_a_run_that_ended_on_a_clock_ahead_of_its_own(
    tmp_path: Any,
) -> None:
    """A run that recorded its end before this one began is counted whole, wherever its
    host's clock put it: one that ran on a host an hour ahead (or before this host's
    clock stepped back) lay after this run's start, was cut there to nothing, and the
    resumed job got its whole wall-time budget again."""
    storage = str(tmp_path / "journal.log")
    _run(tmp_path, budget=Budget(max_trials=1))
    ended = time.time() + 3600.0
    record = {"started_at": ended - 1000.0, "ended_at": ended, "wall_s": 1000.0, "cpu_s": 1.0}
    _set_study_attr(storage, "time_spent:ahead", {**record, "host": "elsewhere", "pid": 1})
    resumed = _run(tmp_path, budget=Budget(max_trials=3, wall_time_s=900))
    assert resumed.stopped_by == "wall_time" and resumed.n_trials == 1


def test_each_run_records_when_it_ran(tmp_path: Any) -> None:
    """A run's wall seconds alone cannot tell workers that ran at once from ones that ran
    one after another; each run records its start and end (UTC epoch seconds)."""
    storage = str(tmp_path / "journal.log")
    data = binary(seed=4, n=150)
    all_started = threading.Barrier(3, timeout=60)

    def worker() -> None:
        calls = iter(range(1_000))

        def interrupted() -> bool:
            if next(calls) == 0:  # before the first trial: every worker is running now
                all_started.wait()
                return False
            return True  # after it

        _run(tmp_path, data=data, budget=Budget(max_trials=100), interrupted=interrupted)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runs = [v for k, v in _study_attrs(storage).items() if k.startswith("time_spent:")]
    assert len(runs) == 3
    for run in runs:
        # epoch seconds near 1.7e9 hold a difference to about 1e-7 s
        assert run["ended_at"] - run["started_at"] == pytest.approx(run["wall_s"], abs=1e-6)
    assert max(r["started_at"] for r in runs) < min(r["ended_at"] for r in runs)


def _run_before_setups_were_pinned(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, **overrides: Any
) -> None:
    """A study run as the code before objective and CV were pinned ran it."""
    import retune._study

    with monkeypatch.context() as patched:
        patched.setattr(retune._study, "settle_setup", lambda handle, **setup: None)
        _run(tmp_path, **overrides)
    assert "cv" not in _study_attrs(str(tmp_path / "journal.log"))


@pytest.mark.parametrize(
    "resumed_with",
    [{"cv": retune.cv.TimeSeriesCV(n_splits=2)}, {}],
    ids=["another_cv", "the_same_setup"],
)
def test_a_study_begun_before_setups_were_pinned_is_not_resumed(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, resumed_with: dict[str, Any]
) -> None:
    """A regression job begun before the upgrade (time-series folds) and resumed after it
    (k-fold) pinned the resumer's CV without a check and added its losses to the
    others; the winner was picked across both."""
    _run_before_setups_were_pinned(tmp_path, monkeypatch, budget=Budget(max_trials=2))
    with pytest.raises(StudyError, match="cannot be verified") as caught:
        _run(tmp_path, budget=Budget(max_trials=4), **resumed_with)
    assert "new study" in str(caught.value)
    assert _trained(str(tmp_path / "journal.log")) == 2
    assert "cv" not in _study_attrs(str(tmp_path / "journal.log"))  # nothing pinned


def test_a_study_with_no_trial_run_yet_pins_the_first_setup(tmp_path: Any) -> None:
    """A study created (its warm-start configurations enqueued) by a worker that stopped
    before its first trial has nothing to verify: the next one pins its setup."""
    from retune._optuna import make_storage

    storage = str(tmp_path / "journal.log")
    backend = make_storage(storage, heartbeat_interval=None)
    study = optuna.create_study(study_name="s", storage=backend)
    study.enqueue_trial({"scaler": "standard", "estimator": "logistic", "C": 1.0})
    assert _run(tmp_path, budget=Budget(max_trials=2)).n_trials == 2
    assert _study_attrs(storage)["cv"]["name"] == StratifiedKFoldCV(n_splits=2).name


def _ask_running_trial(storage: str, run: str | None = None, name: str = "s") -> int:
    """A trial left RUNNING, as a worker killed in the middle of it leaves it; ``run``
    names the run it belonged to."""
    from retune._optuna import make_storage

    backend = make_storage(storage, heartbeat_interval=None)
    trial = optuna.load_study(study_name=name, storage=backend).ask()
    if run is not None:
        trial.set_user_attr("run", run)
    return trial.number


def _trial_states(storage: str, name: str = "s") -> dict[int, optuna.trial.FrozenTrial]:
    from retune._optuna import make_storage

    backend = make_storage(storage, heartbeat_interval=None)
    return {t.number: t for t in optuna.load_study(study_name=name, storage=backend).trials}


def test_a_trial_no_live_run_is_training_does_not_take_the_budget(tmp_path: Any) -> None:
    """Without heartbeats (a journal file) a trial left RUNNING counted towards
    ``max_trials`` forever: resumed to 4 trials, the study trained 3."""
    storage = str(tmp_path / "journal.log")
    assert _run(tmp_path, budget=Budget(max_trials=2)).n_trials == 2
    left = _ask_running_trial(storage)
    resumed = _run(tmp_path, budget=Budget(max_trials=4))
    assert resumed.n_trials == 4 and _trained(storage) == 4
    orphan = _trial_states(storage)[left]
    assert orphan.state == optuna.trial.TrialState.FAIL
    assert "no run" in orphan.user_attrs["orphaned"]


def test_a_trial_of_a_run_that_may_be_live_elsewhere_keeps_its_place(tmp_path: Any) -> None:
    """A run on another host that has not recorded its end may be training its trial:
    without heartbeats nothing tells it from a killed one, so the trial counts (and so
    does one naming no run while that run is live: it may be the instant before its run
    named it)."""
    storage = str(tmp_path / "journal.log")
    _run(tmp_path, budget=Budget(max_trials=2))
    record = {"started_at": 1.0, "host": "another-host", "pid": 1}
    _set_study_attr(storage, "time_spent:elsewhere", record)
    theirs, untagged = (
        _ask_running_trial(storage, "time_spent:elsewhere"),
        _ask_running_trial(storage),
    )
    assert _run(tmp_path, budget=Budget(max_trials=4)).stopped_by == "max_trials"
    trials = _trial_states(storage)
    assert trials[theirs].state == trials[untagged].state == optuna.trial.TrialState.RUNNING
    assert _trained(storage) == 2


def test_a_run_working_elsewhere_counts_the_time_it_last_recorded(tmp_path: Any) -> None:
    """A run that has not recorded its end counted nothing, so a worker joining a job
    an hour in had its whole ``wall_time_s`` again. It counts what it recorded after its
    last trial (workers working at once each check their own clocks plus what the others
    had spent before they started), and is still live: its running trial keeps its
    place."""
    storage = str(tmp_path / "journal.log")
    _run(tmp_path, budget=Budget(max_trials=1))
    began = time.time() - 1000
    # on another host, 1000 s in, in a trial begun 100 s ago
    record = {
        "started_at": began,
        "host": "another-host",
        "pid": 1,
        "wall_s_so_far": 900.0,
        "cpu_s_so_far": 3.0,
        "seen_at": began + 900.0,
    }
    _set_study_attr(storage, "time_spent:elsewhere", record)
    theirs = _ask_running_trial(storage, "time_spent:elsewhere")
    resumed = _run(tmp_path, budget=Budget(max_trials=3, wall_time_s=1500))
    assert resumed.stopped_by == "max_trials"
    assert 900 <= resumed.wall_s < 1500 and resumed.cpu_s >= 3.0
    assert _trial_states(storage)[theirs].state == optuna.trial.TrialState.RUNNING
    # a budget it used up stops a worker joining it before any trial
    joined = _run(tmp_path, budget=Budget(max_trials=10, wall_time_s=800))
    assert joined.stopped_by == "wall_time" and _trained(storage) == 2


def _worker_process(
    storage: str, max_trials: int, fold_s: float, *, park: tuple[int, Path] | None = None
) -> subprocess.Popen[str]:
    """A worker process (``retune_worker.py``) tuning study ``s`` of ``storage``: 1 s
    heartbeats on an RDB URL; ``fold_s`` seconds per fold. With ``park`` (completed
    trials, marker file), the first trial to start after that many completed stops in
    its first fold for good, once it created the marker."""
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": f"{here}{os.pathsep}{here.parents[1]}"}
    parking = [] if park is None else [str(park[0]), str(park[1])]
    return subprocess.Popen(
        [
            sys.executable,
            str(here / "retune_worker.py"),
            storage,
            "s",
            str(max_trials),
            str(fold_s),
            *parking,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _await_parked(worker: subprocess.Popen[str], marker: Path) -> None:
    """Wait until ``worker`` parked a trial (it created ``marker``), failing with its
    stderr should it end first."""
    deadline = time.monotonic() + 60
    while not marker.exists():
        if worker.poll() is not None:
            pytest.fail(f"the worker ended before parking a trial: {worker.communicate()[1]}")
        assert time.monotonic() < deadline, "no trial parked within 60 s"
        time.sleep(0.05)


def _running(storage: str) -> list[int]:
    """The RUNNING trials of study ``s`` (none before the study exists)."""
    try:
        trials = _trial_states(storage).values()
    except KeyError:  # the study is not created yet
        return []
    return [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING]


def test_a_killed_worker_s_trial_is_failed_by_the_next_run_on_its_host(tmp_path: Any) -> None:
    """A worker SIGKILLed (OOM) in the middle of a trial on a journal file: the next run
    on the host sees its process gone, fails the trial and trains its whole budget."""
    storage, parked = str(tmp_path / "journal.log"), tmp_path / "parked"
    victim = _worker_process(storage, 4, fold_s=0.0, park=(0, parked))  # the first trial
    _await_parked(victim, parked)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=10)  # reaped: its process is gone
    [left] = _running(storage)
    survivor = _worker_process(storage, 2, fold_s=0.0)
    out, err = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, err
    assert _trained(storage) == 2
    orphan = _trial_states(storage)[left]
    assert orphan.state == optuna.trial.TrialState.FAIL
    assert "is gone" in orphan.user_attrs["orphaned"]  # killed after its trial named its run


def _beating(path: Path) -> bool:
    """Whether a RUNNING trial of the SQLite file at ``path`` recorded a heartbeat."""
    if not path.exists():
        return False
    with contextlib.closing(sqlite3.connect(path)) as conn:
        try:
            query = (
                "SELECT count(*) FROM trial_heartbeats h JOIN trials t "
                "ON h.trial_id = t.trial_id WHERE t.state = 'RUNNING'"
            )
            return bool(conn.execute(query).fetchone()[0])
        except sqlite3.OperationalError:  # the schema is not set up yet
            return False


def test_a_run_resumed_at_once_does_not_count_a_killed_worker_s_trial_with_heartbeats(
    tmp_path: Any,
) -> None:
    """With heartbeats a RUNNING trial counted towards ``max_trials`` until Optuna found it
    stale (two heartbeat intervals without one): a run resumed at once after its worker
    was killed on the last trial of the budget stopped with ``max_trials``, registering a
    winner of two trials of three, and nothing failed the killed trial: it stayed RUNNING
    for good."""
    path, parked = tmp_path / "optuna.db", tmp_path / "parked"
    storage = f"sqlite:///{path}"
    victim = _worker_process(storage, 3, fold_s=0.0, park=(2, parked))  # the third trial
    _await_parked(victim, parked)
    deadline = time.monotonic() + 60
    while not _beating(path):  # its heartbeat thread beats once a second meanwhile
        assert victim.poll() is None and time.monotonic() < deadline, "no heartbeat"
        time.sleep(0.05)
    assert _trained(storage) == 2
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=10)
    [left] = _running(storage)
    # resumed at once, in this process (a new one takes longer to start than the trial
    # takes to go stale), with the worker's data and setup
    x, y = binary(seed=21, n=1500, n_features=10)
    resumed = run_study(
        storage=storage,
        study_name="s",
        space=small_space(),
        x=x,
        y=y,
        objective=make_objective("log_loss"),
        cv=SlowFolds(n_splits=3),
        budget=Budget(max_trials=3),
        plan=None,
        seed=0,
        heartbeat_interval=1,
    )
    assert (resumed.n_trials, resumed.stopped_by) == (3, "max_trials")
    assert _trained(storage) == 3
    trials = _trial_states(storage)
    assert trials[left].state == optuna.trial.TrialState.FAIL
    assert _running(storage) == []


def _resume_killed_worker_s_study(storage: str, budget: Budget) -> retune.TuningResult:
    """Resume study ``s`` in this process with ``retune_worker.py``'s data and setup."""
    x, y = binary(seed=21, n=1500, n_features=10)
    return run_study(
        storage=storage,
        study_name="s",
        space=small_space(),
        x=x,
        y=y,
        objective=make_objective("log_loss"),
        cv=SlowFolds(n_splits=3),
        budget=budget,
        plan=None,
        seed=0,
        heartbeat_interval=1 if "://" in storage else None,
    )


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_resumed_study_counts_the_time_a_killed_worker_spent_until_its_last_trial(
    tmp_path: Any, kind: str
) -> None:
    """A run recorded its wall and CPU seconds only when it stopped: a worker SIGKILLed
    in a trial (the launcher kills one still running 30 s after SIGTERM, and queues its
    job again) left its time uncounted, and every restart gave the job its whole
    ``wall_time_s`` and ``cpu_time_s`` again. A run records its time after each trial;
    a resumption counts a killed run's up to its last record."""
    storage = str(tmp_path / "journal.log") if kind == "journal" else f"sqlite:///{tmp_path}/o.db"
    parked = tmp_path / "parked"
    # 0.4 s a fold: the run has spent at least its first trial's 3 folds, 1.2 s, by the
    # time its second trial parks
    victim = _worker_process(storage, 4, fold_s=0.4, park=(1, parked))
    _await_parked(victim, parked)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=10)
    assert _trained(storage) == 1
    # the killed run's wall seconds are more than this whole budget: none is left
    by_wall = _resume_killed_worker_s_study(storage, Budget(max_trials=100, wall_time_s=1.0))
    assert by_wall.stopped_by == "wall_time" and by_wall.wall_s >= 1.2
    assert _trained(storage) == 1
    killed = [
        run
        for key, run in _study_attrs(storage).items()
        if key.startswith("time_spent:") and "ended_at" not in run
    ]
    [record] = killed  # the resumption recorded its end; the killed run its last trial
    assert record["cpu_s_so_far"] > 0 and record["wall_s_so_far"] >= 1.2
    # its CPU seconds count as well (a budget of half of them is used up)
    by_cpu = _resume_killed_worker_s_study(
        storage, Budget(max_trials=100, cpu_time_s=record["cpu_s_so_far"] / 2)
    )
    assert by_cpu.stopped_by == "cpu_time" and by_cpu.cpu_s >= record["cpu_s_so_far"]
    assert _trained(storage) == 1


def _killed_after_its_outcome(path: Path) -> int:
    """A trial a worker left RUNNING when killed between recording its ``outcome`` and
    Optuna marking it COMPLETE, its last heartbeat a minute old by the database's clock
    (stale: the trial's retry, a WAITING copy, inherits its user attributes)."""
    from retune._optuna import close_storage, make_storage

    backend = make_storage(f"sqlite:///{path}", heartbeat_interval=1)
    try:
        with pytest.warns(UserWarning, match="Heartbeat"):  # asked outside Study.optimize
            trial = optuna.load_study(study_name="s", storage=backend).ask()
        for key, value in {"run": "time_spent:killed", "outcome": "complete"}.items():
            trial.set_user_attr(key, value)
        backend.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
    finally:
        close_storage(backend)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE trial_heartbeats SET heartbeat = datetime('now', '-60 seconds')")
    return trial.number


def test_a_worker_killed_after_recording_its_outcome_is_counted_once_with_heartbeats(
    tmp_path: Any,
) -> None:
    """The retry of a stale trial copies its user attributes: one killed after recording
    its ``outcome`` but before it was COMPLETE was counted twice, itself and its WAITING
    retry; a run resumed to 3 trials stopped at once reporting 4 (3 trained)."""
    path = tmp_path / "optuna.db"
    storage = f"sqlite:///{path}"

    def resume(max_trials: int) -> retune.TuningResult:
        return _run(
            tmp_path, storage=storage, budget=Budget(max_trials=max_trials), heartbeat_interval=1
        )

    assert resume(2).n_trials == 2
    killed = _killed_after_its_outcome(path)
    resumed = resume(3)
    assert (resumed.n_trials, resumed.stopped_by) == (3, "max_trials")
    assert _trained(storage) == 3
    trials = _trial_states(storage)
    assert trials[killed].state == optuna.trial.TrialState.FAIL
    [retry] = [t for t in trials.values() if t.state == optuna.trial.TrialState.WAITING]
    # resumed further, the retry trains once and is counted once
    assert resume(4).n_trials == 4 and _trained(storage) == 4
    retried = _trial_states(storage)[retry.number]
    assert retried.state == optuna.trial.TrialState.COMPLETE
    assert retried.user_attrs["outcome"] == "complete"


def test_processes_opening_one_new_rdb_storage_together_all_get_it(tmp_path: Any) -> None:
    """The lock opening a storage serialises a process's threads only: worker processes
    started in the same tick on a new database collided in Optuna's schema set-up ("table
    ... already exists", a duplicate ``alembic_version`` row), 4 of 20 openings."""
    import multiprocessing

    from retune_openers import open_together

    ctx = multiprocessing.get_context("spawn")  # fork is unsafe in a threaded test process
    urls = [f"sqlite:///{tmp_path}/optuna-{k}.db" for k in range(8)]
    barrier, failures = ctx.Barrier(2, timeout=120), ctx.Queue()
    args = (urls, barrier, failures)
    processes = [ctx.Process(target=open_together, args=args) for _ in range(2)]
    for process in processes:
        process.start()
    reported: list[str] = []
    done = 0
    while done < len(processes):
        item = failures.get(timeout=180)
        if item is None:
            done += 1
        else:
            reported.append(item)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert reported == []


def test_only_a_schema_set_up_collision_is_retried() -> None:
    """Opening retries the errors of another process setting the same new database up,
    not a storage that is simply unusable."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    from retune._optuna import _is_schema_setup_collision

    def error(kind: type[Exception], message: str) -> Exception:
        return kind("CREATE TABLE studies (...)", {}, Exception(message))

    assert _is_schema_setup_collision(error(OperationalError, "table studies already exists"))
    assert _is_schema_setup_collision(
        error(IntegrityError, "UNIQUE constraint failed: alembic_version.version_num")
    )
    assert _is_schema_setup_collision(
        error(IntegrityError, 'duplicate key value violates unique constraint "pg_type_typname"')
    )
    assert not _is_schema_setup_collision(error(OperationalError, "unable to open database file"))
    assert not _is_schema_setup_collision(FileExistsError("already exists"))
    assert not _is_schema_setup_collision(ValueError("table studies already exists"))


def test_a_study_resumed_with_max_fold_spread_vetoes_an_earlier_winner_over_it(
    tmp_path: Any,
) -> None:
    """The veto applied only to trials run under it: a study resumed (or joined) with
    `max_fold_spread` set chose as winner a trial an earlier run completed without it,
    its fold spread over the limit in force."""
    first = _run(tmp_path, budget=Budget(max_trials=6))
    trials = _trial_states(str(tmp_path / "journal.log")).values()
    steadiest = min(t.user_attrs["fold_spread"] for t in trials if t.value is not None)
    assert steadiest < first.fold_scores_of_best.spread  # the seeded study's winner is not
    limit = (steadiest + first.fold_scores_of_best.spread) / 2
    second = _run(
        tmp_path,
        cv=StratifiedKFoldCV(n_splits=2, max_fold_spread=limit),
        budget=Budget(max_trials=8),
    )
    assert second.fold_scores_of_best.spread <= limit
    # the first run's winner is over the limit; the resumed run's own trials (sampled with
    # a joining worker's random seed) may or may not beat its loss, so compare the winner
    assert second.best_params != first.best_params
    assert second.n_vetoed >= 1


def _series_with_quiet_tail() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    y = (x[:, 0] > 0).astype(np.int64)
    y[-30:] = 0  # the last time-series test fold (rows 90..119) holds class 0 only
    return x, y


@pytest.mark.parametrize(
    ("name", "params"),
    [("roc_auc", {}), ("pr_auc", {}), ("recall_at_precision", {"min_precision": 0.5})],
)
def test_an_objective_no_test_fold_can_score_is_refused_before_any_trial(
    tmp_path: Any, name: str, params: dict[str, Any]
) -> None:
    """A time-series test fold of one class made the ranking objective raise in every
    trial: the whole budget trained configurations that all failed, and the job said
    only that no trial completed."""
    with pytest.raises(StudyError, match=rf"{name} cannot be computed on test fold 2 \(30 rows"):
        _run(
            tmp_path,
            data=_series_with_quiet_tail(),
            objective=make_objective(name, task="binary", **params),
            cv=retune.cv.TimeSeriesCV(n_splits=3),
            budget=Budget(max_trials=8),
        )
    assert not (tmp_path / "journal.log").exists()  # refused before the study was opened


def test_a_test_fold_of_one_class_is_tuned_under_an_objective_that_scores_it(
    tmp_path: Any,
) -> None:
    result = _run(
        tmp_path,
        data=_series_with_quiet_tail(),
        cv=retune.cv.TimeSeriesCV(n_splits=3),
        budget=Budget(max_trials=2),
    )
    assert result.n_trials == 2 and result.n_failed == 0


def test_a_classification_window_of_one_class_is_refused_before_any_trial(
    tmp_path: Any,
) -> None:
    """Stratified k-fold splits a window of one class; each trial then failed to fit."""
    x, _ = binary(seed=4, n=150)
    with pytest.raises(StudyError, match=r"needs >= 2 classes in the training window, got \[1\]"):
        _run(tmp_path, data=(x, np.ones(150, dtype=np.int64)), budget=Budget(max_trials=8))
    assert not (tmp_path / "journal.log").exists()


def test_a_time_series_training_fold_of_one_class_is_refused_for_a_classifier(
    tmp_path: Any,
) -> None:
    x, y = binary(seed=4, n=150)
    y[:60] = 0  # the first training fold (rows 0..38) holds class 0 only
    with pytest.raises(
        StudyError, match=r"training fold 0 \(39 rows, 0\.\.38\) has one class only"
    ):
        _run(tmp_path, data=(x, y), cv=retune.cv.TimeSeriesCV(n_splits=3))


def test_a_regression_window_whose_first_rows_share_one_value_is_tuned_over_time(
    tmp_path: Any,
) -> None:
    """Time-series CV applied its classifier check to a regression target: a window whose
    first rows share one value (no demand yet) was refused as "one class only"."""
    x, y = regression(seed=5, n=200)
    y[:60] = 0.0
    result = _run(
        tmp_path,
        data=(x, y),
        space=retune.space.parse_search_space(
            {"name": "r", "params": {"estimator": {"type": "categorical", "choices": ["ridge"]}}}
        ),
        objective=make_objective("mae", task="regression"),
        cv=retune.cv.TimeSeriesCV(n_splits=3),
        budget=Budget(max_trials=2),
    )
    assert result.n_trials == 2 and result.n_failed == 0


def test_labels_that_are_not_class_indices_are_refused_before_any_trial(tmp_path: Any) -> None:
    """A NaN label cast to int64 (the int64 minimum) made every trial fail to score."""
    x, y = binary(seed=4, n=150)
    y[::7] = np.iinfo(np.int64).min
    with pytest.raises(StudyError, match=r"labels must be class indices .* in 22 rows"):
        _run(tmp_path, data=(x, y), budget=Budget(max_trials=3))
    assert not (tmp_path / "journal.log").exists()


def test_a_label_far_beyond_any_class_is_refused_before_any_prediction_is_built() -> None:
    from retune.cv._window import MAX_CLASSES, check_window

    x = np.zeros((6, 2))
    y = np.array([0, 1, 0, 1, 0, float(10**9)])
    with pytest.raises(CVError, match=f"class indices below {MAX_CLASSES}, got 1000000000"):
        check_window(x, y, scheme=StratifiedKFoldCV(n_splits=2), objective=LogLoss(), seed=0)


def _all_zero(x: np.ndarray) -> np.ndarray:
    return np.zeros_like(x)


def _one_row_repeated(x: np.ndarray) -> np.ndarray:
    return np.repeat(x[:1], len(x), axis=0)


def _constant_but_missing(x: np.ndarray) -> np.ndarray:
    """Each column one value wherever it is not NaN: the imputer fills the NaNs with it."""
    out = np.tile(np.arange(x.shape[1], dtype=np.float64), (len(x), 1))
    out[::3, 0] = np.nan
    out[1::4, 2] = np.nan
    return out


@pytest.mark.parametrize(
    "degenerate",
    [_all_zero, _one_row_repeated, _constant_but_missing],
    ids=["all_zero", "one_row_repeated", "constant_but_missing"],
)
def test_a_window_whose_every_feature_is_constant_is_refused_before_any_trial(
    tmp_path: Any, degenerate: Any
) -> None:
    """400 requests whose features were all 0.0 (a feed broken to defaults) were tuned:
    every configuration learnt the label shares alone, and that constant predictor was
    registered and promoted."""
    x, y = binary(seed=4, n=150)
    with pytest.raises(
        StudyError, match=r"every feature is constant in the training window \(150 rows\)"
    ):
        _run(tmp_path, data=(degenerate(x), y), budget=Budget(max_trials=3))
    assert not (tmp_path / "journal.log").exists()


def test_a_regression_window_whose_every_feature_is_constant_is_refused() -> None:
    from retune.cv._window import check_window

    x, y = regression(seed=4, n=120)
    with pytest.raises(CVError, match=r"every feature is constant .* \(120 rows\); check the"):
        check_window(
            np.ones_like(x),
            y,
            scheme=retune.cv.KFoldCV(n_splits=3),
            objective=make_objective("mae", task="regression"),
            seed=0,
        )


def test_a_regression_target_that_is_constant_is_refused() -> None:
    """A constant target was tuned to a best value of 0.0 by a model answering it."""
    from retune.cv._window import check_window

    x, _ = regression(seed=4, n=120)
    with pytest.raises(
        CVError, match=r"the target is constant \(3\.0 on all 120 rows\); check the labels"
    ):
        check_window(
            x,
            np.full(120, 3.0),
            scheme=retune.cv.KFoldCV(n_splits=3),
            objective=make_objective("mae", task="regression"),
            seed=0,
        )


def test_a_window_with_some_constant_features_is_tuned(tmp_path: Any) -> None:
    """Only a window with no feature that varies is refused: one that does is tuned."""
    x, y = binary(seed=4, n=150)
    x[:, 1:] = 0.0  # column 0 alone varies (and carries the signal)
    result = _run(tmp_path, data=(x, y), budget=Budget(max_trials=2))
    assert result.n_trials == 2 and result.n_failed == 0


_LOGISTIC_SCALED = {
    "name": "logistic",
    "params": {
        "scaler": {"type": "categorical", "choices": ["none", "standard", "robust"]},
        "estimator": {
            "type": "categorical",
            "choices": ["logistic"],
            "when": {"logistic": {"C": {"type": "float", "low": 1e-4, "high": 100.0, "log": True}}},
        },
    },
}


def test_a_resumed_study_reports_the_space_it_began_with_not_the_edited_one(
    tmp_path: Any,
) -> None:
    """The result names the space the study searched: a study resumed after its YAML was
    edited goes on with the space it began with, and its result says so (the version's
    report read the file's path only, so an edit rewrote what a report said was searched)."""
    began = retune.space.parse_search_space(_LOGISTIC_SCALED)
    first = _run(tmp_path, space=began, budget=Budget(max_trials=2))
    assert first.space == began
    edited = retune.space.parse_search_space(
        {
            **_LOGISTIC_SCALED,
            "params": {
                **_LOGISTIC_SCALED["params"],
                "scaler": {"type": "categorical", "choices": ["none"]},
            },
        }
    )
    resumed = _run(tmp_path, space=edited, budget=Budget(max_trials=3))
    assert resumed.space == began != edited


@pytest.mark.parametrize("stored", ["cost-only", "none"])
def test_a_worker_joining_a_study_samples_by_its_stored_plan_even_an_empty_one(
    tmp_path: Any, stored: str
) -> None:
    """A stored plan of cost ceilings only counts as empty, and a study begun without a
    plan stores none: a worker joining (or resuming) it kept sampling with its own plan's
    box and frozen values, a plan the study never recorded (C drawn in [50, 60] and the
    scaler frozen while the stored plan and `result.plan` said neither)."""
    from retune.warmstart import CostCeiling, NumericBound

    first_plan = None
    if stored == "cost-only":
        first_plan = WarmStartPlan(
            strategies=("cost_constraint",), cost=CostCeiling(max_latency_p99_s=10.0)
        )
    space = retune.space.parse_search_space(_LOGISTIC_SCALED)
    first = _run(tmp_path, space=space, plan=first_plan, budget=Budget(max_trials=2))
    assert first.plan == first_plan
    own = WarmStartPlan(
        strategies=("combined",),
        numeric_box=(NumericBound(name="C", low=50.0, high=60.0),),
        frozen={"scaler": "robust"},
    )
    joined = _run(tmp_path, space=space, plan=own, budget=Budget(max_trials=12))
    assert joined.plan == first_plan  # the plan the study ran by, not the joiner's
    attrs = _study_attrs(str(tmp_path / "journal.log"))
    assert attrs.get("warmstart_plan") == (None if first_plan is None else first_plan.to_json())
    later = [t for t in _trial_states(str(tmp_path / "journal.log")).values() if t.number >= 2]
    assert len(later) == 10
    # ten draws of the full space: one outside [50, 60] (log-uniform over 1e-4..100) and one
    # not `robust` are all but certain; under the joiner's plan there were none
    assert any(not 50.0 <= t.params["C"] <= 60.0 for t in later)
    assert any(t.params["scaler"] != "robust" for t in later)


def test_enqueued_trials_waiting_to_run_do_not_count_towards_no_improvement(
    tmp_path: Any,
) -> None:
    """Six enqueued configurations each improve on the last (C 0.01 .. 9): the WAITING
    ones have no loss yet and must not read as trials that failed to improve, which
    stopped the study after its first trial under patience 3."""
    plan = WarmStartPlan(
        enqueue=tuple(
            {"scaler": "standard", "estimator": "logistic", "C": c}
            for c in (0.01, 0.1, 1.0, 3.0, 5.0, 9.0)
        )
    )
    result = _run(tmp_path, plan=plan, budget=Budget(max_trials=8, patience=3))
    assert (result.n_trials, result.stopped_by) == (8, "max_trials")
    assert result.best_params == {"scaler": "standard", "estimator": "logistic", "C": 9.0}


def test_successive_halving_prunes_trials_worse_at_a_fold(tmp_path: Any) -> None:
    result = _run(
        tmp_path,
        plan=_PRUNABLE,
        cv=StratifiedKFoldCV(n_splits=3),
        budget=Budget(max_trials=6, pruner="successive_halving"),
    )
    assert (result.n_trials, result.n_pruned) == (6, 5)


def test_a_study_resumed_with_max_fold_spread_exactly_at_the_winner_s_spread_keeps_it(
    tmp_path: Any,
) -> None:
    """The limit is inclusive in the winner filter as in the veto itself: a resumed
    study (no trial left to run) whose limit equals its winner's spread keeps it."""
    first = _run(tmp_path, budget=Budget(max_trials=6))
    limit = first.fold_scores_of_best.spread
    resumed = _run(
        tmp_path,
        cv=StratifiedKFoldCV(n_splits=2, max_fold_spread=limit),
        budget=Budget(max_trials=6),
    )
    assert resumed.n_trials == 6  # nothing new ran
    assert (resumed.best_params, resumed.best_value) == (first.best_params, first.best_value)


_CUSTOMERS = np.arange(150) % 10  # binary(seed=4, n=150)'s rows, ten customers


def _grouped(groups: np.ndarray | None, **overrides: Any) -> dict[str, Any]:
    return {"cv": retune.cv.GroupKFoldCV(n_splits=2), "groups": groups, **overrides}


def test_joining_a_grouped_study_with_other_group_ids_is_refused(tmp_path: Any) -> None:
    """Neither the dataset version nor the pinned CV held the group ids: a worker (or a
    resumed job whose `cv_group_column` changed) joined with another grouping, and the
    winner was picked across losses of other folds, one of them leaking customers."""
    _run(tmp_path, budget=Budget(max_trials=2), **_grouped(_CUSTOMERS))
    with pytest.raises(StudyError, match="it was tuned with cv ") as caught:
        _run(tmp_path, budget=Budget(max_trials=4), **_grouped(np.arange(150)))
    assert '"groups": "sha256:' in str(caught.value)
    assert _trained(str(tmp_path / "journal.log")) == 2
    # the same customers join, under other ids in the same order (a float column)
    same = _run(tmp_path, budget=Budget(max_trials=3), **_grouped(_CUSTOMERS * 10.0 + 3))
    assert same.n_trials == 3


def _pinned_before_groups_were(storage: str) -> None:
    """The study's CV as it was pinned before group ids were recorded in it."""
    cv = _study_attrs(storage)["cv"]
    del cv["groups"]
    _set_study_attr(storage, "cv", cv)


def test_a_study_pinned_before_group_ids_were_resumes_with_or_without_groups(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Its pin records no group ids: a worker without groups is its setup (group ids do
    not change an ungrouped scheme's folds), and one with groups resumes (the grouped
    jobs running at the upgrade: refused, each failed when the daemon restarted), with
    a warning, and pins them; neither is refused as a mismatch of the pin alone."""
    storage = str(tmp_path / "journal.log")
    _run(tmp_path, budget=Budget(max_trials=2))
    _pinned_before_groups_were(storage)
    assert _run(tmp_path, budget=Budget(max_trials=3)).n_trials == 3
    assert _study_attrs(storage)["cv"]["groups"] is None  # pinned now

    _run(tmp_path, "g", budget=Budget(max_trials=2), **_grouped(_CUSTOMERS))
    pinned = _study_attrs(storage, "g")["cv"]
    del pinned["groups"]
    _set_study_attr(storage, "cv", pinned, name="g")
    with caplog.at_level("WARNING", logger="retune._study"):
        _run(tmp_path, "g", budget=Budget(max_trials=4), **_grouped(_CUSTOMERS))
    assert any("pinned before studies recorded group ids" in r.getMessage() for r in caplog.records)
    assert _trained(storage, "g") == 4
    assert _study_attrs(storage, "g")["cv"]["groups"] is not None  # pinned now


def test_a_study_pinned_before_group_ids_were_with_no_trial_pins_the_groups(
    tmp_path: Any,
) -> None:
    from retune._optuna import make_storage

    storage = str(tmp_path / "journal.log")
    _run(tmp_path, budget=Budget(max_trials=1), **_grouped(_CUSTOMERS))
    pinned = _study_attrs(storage)["cv"]
    del pinned["groups"]
    backend = make_storage(storage, heartbeat_interval=None)
    study = optuna.create_study(study_name="fresh", storage=backend)
    study.set_user_attr("cv", pinned)
    assert _run(tmp_path, "fresh", budget=Budget(max_trials=1), **_grouped(_CUSTOMERS)).n_trials
    assert _study_attrs(storage, "fresh")["cv"] == _study_attrs(storage)["cv"]


def test_a_worker_resuming_a_study_whose_enqueue_was_interrupted_enqueues_the_rest(
    tmp_path: Any,
) -> None:
    """The first worker stores the plan, enqueues its configurations, then the dataset
    version. Killed after enqueueing one of three, it left the plan stored and no dataset
    version: the resuming worker adopted the plan and never enqueued the other two, while
    the plan (and the report) listed all three as re-scored first."""
    from retune._optuna import make_storage

    storage = str(tmp_path / "journal.log")
    configs = tuple(
        {"scaler": "standard", "estimator": "logistic", "C": c} for c in (0.5, 3.0, 0.05)
    )
    plan = WarmStartPlan(strategies=("enqueue_top_k",), enqueue=configs)
    backend = make_storage(storage, heartbeat_interval=None)
    study = optuna.create_study(study_name="s", storage=backend)
    study.set_user_attr("warmstart_plan_by", {"host": this_host(), "pid": _gone_pid()})
    study.set_user_attr("warmstart_plan", plan.to_json())
    study.enqueue_trial(configs[0], user_attrs={"warm_start": "enqueued"}, skip_if_exists=True)

    result = _run(tmp_path, plan=plan, budget=Budget(max_trials=4))
    assert result.plan == plan
    enqueued = [
        t.params
        for t in _trial_states(storage).values()
        if t.user_attrs.get("warm_start") == "enqueued"
    ]
    assert sorted(p["C"] for p in enqueued) == [0.05, 0.5, 3.0]  # each once
    assert _study_attrs(storage)["dataset_version"] == result.dataset_version


def _gone_pid() -> int:
    """The PID of a process that ran here and is gone (reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])  # noqa: S603
    proc.wait()
    return proc.pid


def test_a_worker_joining_while_the_plan_is_being_enqueued_enqueues_nothing(
    tmp_path: Any,
) -> None:
    """A stored plan without a dataset version is also the state of a study whose first
    worker is still enqueueing: a joiner enqueueing the plan again then trained its
    configurations twice (Optuna's ``skip_if_exists`` checks, then inserts). Only a
    worker that knows the storing process is gone completes its enqueue."""
    from retune._optuna import make_storage

    storage = str(tmp_path / "journal.log")
    configs = tuple(
        {"scaler": "standard", "estimator": "logistic", "C": c} for c in (0.5, 3.0, 0.05)
    )
    plan = WarmStartPlan(strategies=("enqueue_top_k",), enqueue=configs)
    backend = make_storage(storage, heartbeat_interval=None)
    study = optuna.create_study(study_name="s", storage=backend)
    # the storing worker is this very process: alive
    study.set_user_attr("warmstart_plan_by", {"host": this_host(), "pid": os.getpid()})
    study.set_user_attr("warmstart_plan", plan.to_json())
    study.enqueue_trial(configs[0], user_attrs={"warm_start": "enqueued"}, skip_if_exists=True)

    _run(tmp_path, plan=plan, budget=Budget(max_trials=2))
    enqueued = [
        t.params
        for t in _trial_states(storage).values()
        if t.user_attrs.get("warm_start") == "enqueued"
    ]
    assert [p["C"] for p in enqueued] == [0.5]  # the storer enqueues the rest
