from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from retune_data import binary, regression, small_space
from sklearn.feature_selection import SelectKBest, f_classif

from monitor.objectives import make_objective
from retune import Budget, CVError, StudyError, refit_and_export, run_study
from retune.cv import (
    CVScheme,
    FoldScores,
    GroupKFoldCV,
    KFoldCV,
    NestedCV,
    NestedSplitError,
    StratifiedKFoldCV,
    TimeSeriesCV,
    cross_validate,
    dataset_version,
    nested_estimate,
    out_of_fold,
)
from retune.space import fit_pipeline

LOGISTIC = {"estimator": "logistic", "scaler": "standard"}
SCHEMES: dict[str, CVScheme] = {
    "stratified": StratifiedKFoldCV(n_splits=3),
    "grouped": GroupKFoldCV(n_splits=3),
    "kfold": KFoldCV(n_splits=3),
    "time_series": TimeSeriesCV(n_splits=3, gap=10),
    "nested": NestedCV(outer=StratifiedKFoldCV(n_splits=3), inner=StratifiedKFoldCV(n_splits=2)),
}


def _groups(n: int) -> np.ndarray:
    return np.repeat(np.arange(n // 10), 10)[:n]


@pytest.mark.parametrize("name", sorted(SCHEMES))
class TestSchemeContract:
    def test_folds_are_disjoint_and_scores_are_per_fold(self, name: str) -> None:
        scheme = SCHEMES[name]
        x, y = binary(seed=1)
        groups = _groups(len(y))
        splits = list(scheme.split(x, y, groups=groups, seed=0))
        assert len(splits) == scheme.n_splits
        for train, test in splits:
            assert not set(train) & set(test)
        scores = cross_validate(
            LOGISTIC,
            x,
            y,
            scheme=scheme,
            objective=make_objective("log_loss"),
            seed=0,
            groups=groups,
        )
        assert len(scores.scores) == scheme.n_splits
        assert scores.mean == pytest.approx(np.mean(scores.scores))
        assert scores.spread == pytest.approx(max(scores.scores) - min(scores.scores))
        assert 0.2 < scores.mean < 0.69 and not scores.vetoed

    def test_same_seed_gives_same_scores(self, name: str) -> None:
        x, y = binary(seed=2)
        kwargs: dict[str, Any] = {
            "scheme": SCHEMES[name],
            "objective": make_objective("brier"),
            "seed": 4,
            "groups": _groups(len(y)),
        }
        assert cross_validate(LOGISTIC, x, y, **kwargs) == cross_validate(LOGISTIC, x, y, **kwargs)

    def test_pruning_callback_sees_running_means_and_can_stop(self, name: str) -> None:
        x, y = binary(seed=1)
        seen: list[tuple[int, float]] = []

        class Stop(Exception):
            pass

        def callback(fold: int, mean: float) -> None:
            seen.append((fold, mean))
            if fold == 1:
                raise Stop

        with pytest.raises(Stop):
            cross_validate(
                LOGISTIC,
                x,
                y,
                scheme=SCHEMES[name],
                objective=make_objective("log_loss"),
                seed=0,
                groups=_groups(len(y)),
                pruning_callback=callback,
            )
        assert [f for f, _ in seen] == [0, 1]


def test_time_series_folds_train_on_the_past_with_the_gap() -> None:
    x, y = binary(seed=1)
    for train, test in TimeSeriesCV(n_splits=3, gap=10).split(x, y, seed=0):
        assert train.max() + 10 < test.min()


def test_grouped_folds_keep_each_group_in_one_fold_and_need_groups() -> None:
    x, y = binary(seed=1)
    groups = _groups(len(y))
    for train, test in GroupKFoldCV(n_splits=3).split(x, y, groups=groups, seed=0):
        assert not set(groups[train]) & set(groups[test])
    with pytest.raises(CVError, match="needs `groups`"):
        list(GroupKFoldCV(n_splits=3).split(x, y, groups=None, seed=0))


def test_max_fold_spread_vetoes_an_unstable_configuration() -> None:
    x, y = binary(seed=1)
    scheme = StratifiedKFoldCV(n_splits=3, max_fold_spread=1e-6)
    scores = cross_validate(
        LOGISTIC, x, y, scheme=scheme, objective=make_objective("log_loss"), seed=0
    )
    assert scores.vetoed and scores.spread > 1e-6


def test_nested_estimate_scores_each_outer_choice_on_unseen_rows() -> None:
    x, y = binary(seed=5)
    scheme = NestedCV(outer=StratifiedKFoldCV(n_splits=3), inner=StratifiedKFoldCV(n_splits=2))
    objective = make_objective("log_loss")
    candidates = [{"estimator": "logistic", "C": 1e-3}, {"estimator": "logistic", "C": 1.0}]

    def select(xt: np.ndarray, yt: np.ndarray, gt: np.ndarray | None) -> dict[str, Any]:
        return min(
            candidates,
            key=lambda p: (
                cross_validate(p, xt, yt, scheme=scheme, objective=objective, seed=0).mean
            ),
        )

    estimate = nested_estimate(select, x, y, scheme=scheme, objective=objective, seed=0)
    assert len(estimate.outer.scores) == 3
    assert all(c["C"] == 1.0 for c in estimate.chosen)  # weak regularisation wins on this signal
    assert 0.2 < estimate.outer.mean < 0.6


def test_nested_selection_sees_exactly_the_outer_training_rows() -> None:
    """The estimate is unbiased only if the selection never sees an outer test row: each
    call gets the outer training part's rows, labels and group ids, in order, no more."""
    x, y = binary(seed=5, n=120)
    x[:, 0] = np.arange(len(y))  # a row id, to tell which rows the selection got
    groups = _groups(len(y))
    scheme = NestedCV(outer=GroupKFoldCV(n_splits=3), inner=GroupKFoldCV(n_splits=2))
    received: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []

    def select(xt: np.ndarray, yt: np.ndarray, gt: np.ndarray | None) -> dict[str, Any]:
        received.append((xt.copy(), yt.copy(), None if gt is None else gt.copy()))
        return LOGISTIC

    nested_estimate(
        select, x, y, scheme=scheme, objective=make_objective("log_loss"), seed=0, groups=groups
    )
    outer = list(scheme.outer.split(x, y, groups=groups, seed=0))
    assert len(received) == len(outer) == 3
    for (xt, yt, gt), (train, test) in zip(received, outer, strict=True):
        assert xt[:, 0].astype(int).tolist() == train.tolist()
        assert not set(xt[:, 0].astype(int)) & set(test.tolist())
        assert np.array_equal(yt, y[train])
        assert gt is not None and np.array_equal(gt, groups[train])


def _rare_class(n_rare: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = binary(seed=5, n=120)
    y = np.zeros_like(y)
    y[:n_rare] = 1
    return x, y


def test_nested_cv_refuses_an_outer_training_part_the_inner_scheme_cannot_split(
    tmp_path: Any,
) -> None:
    """Five rows of the rare class pass the inner 4-fold on the whole window, but an outer
    training part holds 3 or 4 of them. Only the whole window was split up front, so the
    selection (a whole tuning run) ran before the first outer part failed."""
    x, y = _rare_class(5)
    scheme = NestedCV(outer=StratifiedKFoldCV(n_splits=3), inner=StratifiedKFoldCV(n_splits=4))
    assert len(list(scheme.split(x, y, seed=0))) == 4  # the whole window splits
    with pytest.raises(NestedSplitError) as caught:
        scheme.check(x, y, seed=0)
    assert caught.value.outer_part is not None
    assert re.fullmatch(
        rf"outer training part {caught.value.outer_part} \(\d+ rows\) cannot be split by the "
        r"inner stratified_kfold: stratified 4-fold needs >= 4 rows of every class, the "
        r"rarest has 3",
        str(caught.value),
    )
    selected: list[int] = []

    def select(xt: np.ndarray, yt: np.ndarray, gt: np.ndarray | None) -> dict[str, Any]:
        selected.append(len(yt))
        return LOGISTIC

    objective = make_objective("log_loss")
    with pytest.raises(NestedSplitError):
        nested_estimate(select, x, y, scheme=scheme, objective=objective, seed=0)
    assert selected == []  # refused before the first selection
    with pytest.raises(StudyError, match="cannot be split by nested: outer training part"):
        run_study(
            storage=str(tmp_path / "journal.log"),
            study_name="nested",
            space=small_space(),
            x=x,
            y=y,
            objective=objective,
            cv=scheme,
            budget=Budget(max_trials=2),
            plan=None,
            seed=0,
        )
    assert not (tmp_path / "journal.log").exists()  # no study, no trial


def _one_class_per_customer() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """12 customers of 10 rows, each customer's rows of one class (6 of each)."""
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(12), 10).astype(float)
    per_customer = np.array([0, 1] * 6)
    rng.shuffle(per_customer)
    y = per_customer[groups.astype(int)]
    x = rng.normal(size=(len(y), 3))
    x[:, 0] += y
    return x, y, groups


@pytest.mark.parametrize("objective", ["log_loss", "roc_auc"])
def test_nested_cv_refuses_an_outer_part_whose_inner_training_fold_has_one_class(
    tmp_path: Any, objective: str
) -> None:
    """Every outer training part splits, but the inner 2-fold of one leaves a training
    fold of one class: the check only split the parts, so the main study and the first
    outer one spent their budgets before the second outer study failed every trial."""
    x, y, groups = _one_class_per_customer()
    scheme = NestedCV(outer=GroupKFoldCV(n_splits=3), inner=GroupKFoldCV(n_splits=2))
    loss = make_objective(objective)
    scheme.check(x, y, groups=groups, seed=0)  # each part splits
    with pytest.raises(NestedSplitError) as caught:
        scheme.check(x, y, groups=groups, seed=0, objective=loss)
    assert (caught.value.outer_part, caught.value.test_part) == (1, False)
    assert str(caught.value) == (
        "outer training part 1 (80 rows) cannot be tuned with the inner group_kfold: "
        "training fold 0 (40 rows) has one class only ([1]); use fewer splits or a longer "
        "window"
    )
    selected: list[int] = []

    def select(xt: np.ndarray, yt: np.ndarray, gt: np.ndarray | None) -> dict[str, Any]:
        selected.append(len(yt))
        return LOGISTIC

    with pytest.raises(NestedSplitError):
        nested_estimate(select, x, y, scheme=scheme, objective=loss, seed=0, groups=groups)
    assert selected == []  # refused before the first selection
    with pytest.raises(
        StudyError, match="nested cannot estimate the tuning.*outer training part 1"
    ):
        run_study(
            storage=str(tmp_path / "journal.log"),
            study_name="nested",
            space=small_space(),
            x=x,
            y=y,
            objective=loss,
            cv=scheme,
            budget=Budget(max_trials=2),
            plan=None,
            seed=0,
            groups=groups,
        )
    assert not (tmp_path / "journal.log").exists()  # no study, no trial


def test_nested_cv_refuses_an_outer_test_part_a_ranking_objective_cannot_score() -> None:
    """Nine customers, three outer parts: the customers of outer test part 0 are all of
    class 0. ROC AUC cannot score that part, found only after its outer study ran; log
    loss can."""
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(9), 20)
    x = rng.normal(size=(len(groups), 3))
    y = (x[:, 0] + rng.normal(scale=0.5, size=len(groups)) > 0).astype(np.int64)
    scheme = NestedCV(outer=GroupKFoldCV(n_splits=3), inner=GroupKFoldCV(n_splits=3))
    _, test = next(scheme.outer.split(x, y, groups=groups, seed=0))
    y[test] = 0
    scheme.check(x, y, groups=groups, seed=0, objective=make_objective("log_loss"))
    with pytest.raises(NestedSplitError) as caught:
        scheme.check(x, y, groups=groups, seed=0, objective=make_objective("roc_auc"))
    assert (caught.value.outer_part, caught.value.test_part) == (0, True)
    assert str(caught.value).startswith(
        f"objective roc_auc cannot be computed on outer test part 0 ({len(test)} rows): "
    )


def test_nested_cv_refuses_data_its_outer_scheme_cannot_split() -> None:
    x, y = _rare_class(2)
    scheme = NestedCV(outer=StratifiedKFoldCV(n_splits=3), inner=StratifiedKFoldCV(n_splits=2))
    with pytest.raises(NestedSplitError) as caught:
        scheme.check(x, y, seed=0)
    assert caught.value.outer_part is None
    assert str(caught.value) == (
        "the outer stratified_kfold cannot split the data: stratified 3-fold needs >= 3 rows "
        "of every class, the rarest has 2"
    )


def test_selection_fitted_before_cv_leaks_and_in_fold_selection_does_not() -> None:
    """Pure noise, many features: choosing the 10 features most correlated with the label
    on *all* rows makes CV look skilful; selecting inside each fold shows chance level."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 2000))
    y = np.tile([0, 1], 60)
    scheme = StratifiedKFoldCV(n_splits=3)
    accuracy = make_objective("accuracy")
    selected = SelectKBest(f_classif, k=10).fit_transform(x, y)  # the leak
    leaky = -cross_validate(
        {"estimator": "logistic"}, selected, y, scheme=scheme, objective=accuracy, seed=0
    ).mean
    in_fold = -cross_validate(
        {"estimator": "logistic", "selector": "k_best", "select_k": 10},
        x,
        y,
        scheme=scheme,
        objective=accuracy,
        seed=0,
    ).mean
    assert leaky > 0.75
    assert 0.3 < in_fold < 0.65


def test_dataset_version_is_a_content_hash() -> None:
    x, y = binary(seed=1)
    v = dataset_version(x, y, {"window": "2024-01"})
    assert v.startswith("sha256:") and v == dataset_version(
        x.copy(), y.copy(), {"window": "2024-01"}
    )
    x2 = x.copy()
    x2[0, 0] += 1e-9
    assert dataset_version(x2, y, {"window": "2024-01"}) != v
    assert dataset_version(x, y, {"window": "2024-02"}) != v


def test_dataset_version_changes_with_the_labels_and_their_rows() -> None:
    """A window whose features are the same but whose labels differ (one label fed back
    changed, two rows' labels swapped) is other data: a study tuned on the one must not
    take trials of the other."""
    x, y = binary(seed=1)
    v = dataset_version(x, y)
    relabelled = y.copy()
    relabelled[7] = 1 - relabelled[7]
    assert dataset_version(x, relabelled) != v
    i, j = int(np.argmax(y == 0)), int(np.argmax(y == 1))
    swapped = y.copy()
    swapped[[i, j]] = swapped[[j, i]]
    assert dataset_version(x, swapped) != v
    rows = x.copy()
    rows[[i, j]] = rows[[j, i]]  # the rows swapped, features and labels together
    assert dataset_version(rows, swapped) != v


def test_a_class_missing_from_a_training_fold_is_scored_in_its_own_column() -> None:
    """`predict_proba` has a column per class the fold saw: with class 1 absent from the
    first time-series fold, class 2's probabilities sat in class 1's column."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 3))
    y = np.where(x[:, 0] > 0, 2, 0)
    y[150:] = np.where(x[150:, 1] > 0.5, 1, y[150:])  # class 1 appears late
    objective = make_objective("log_loss", task="multiclass")
    scheme = TimeSeriesCV(n_splits=2)
    [(train, test), _] = list(scheme.split(x, y, seed=0))
    assert 1 not in set(y[train]) and 1 in set(y[test])
    scores = cross_validate(LOGISTIC, x, y, scheme=scheme, objective=objective, seed=0)
    pipeline = fit_pipeline(LOGISTIC, x[train], y[train], seed=0)
    full = np.zeros((len(test), 3))
    full[:, pipeline.classes_] = pipeline.predict_proba(x[test])
    assert scores.scores[0] == pytest.approx(objective.loss(y[test], full))


def test_refit_holdout_is_not_stratified_when_a_class_has_one_row() -> None:
    """train_test_split cannot stratify on a class with a single member: the export of
    a window holding one such label raised."""
    x, y = binary(seed=2, n=200)
    y = y.copy()
    y[0] = 2
    exported = refit_and_export(LOGISTIC, x, y)
    assert exported.parity_error <= 1e-4


def test_refit_holdout_is_not_stratified_when_it_cannot_hold_every_class() -> None:
    """Every class has 2 rows or more, so the holdout was stratified, but 12 classes of 3
    rows leave a holdout of 8 rows (50 classes of 4 and 40 in a real window):
    train_test_split's bare ValueError escaped after the whole study."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(12), 3)
    x = rng.normal(size=(len(y), 4)) + y[:, None] * 0.1
    exported = refit_and_export({"estimator": "logistic"}, x, y, n_classes=12)
    assert exported.parity_error <= 1e-4
    # a holdout of exactly one row per class (12 of 36) can be stratified, and splits
    exported = refit_and_export({"estimator": "logistic"}, x, y, holdout_fraction=1 / 3)
    assert exported.parity_error <= 1e-4


def test_out_of_fold_scores_come_from_models_that_never_saw_the_row() -> None:
    """A deep forest's scores on its own training rows are near-certain; held out they
    are not. A monitor calibrated on the former overestimates production accuracy."""
    x, y = binary(seed=5, n=300)
    params = {"estimator": "random_forest", "forest_n_estimators": 20, "forest_max_depth": 12}
    held_out = out_of_fold(params, x, y, scheme=StratifiedKFoldCV(n_splits=3), seed=0)
    assert held_out.shape == (300, 2) and np.isfinite(held_out).all()
    in_sample = fit_pipeline(params, x, y, seed=0).predict_proba(x)
    accuracy = lambda p: float(((p[:, 1] >= 0.5) == y).mean())  # noqa: E731
    assert accuracy(in_sample) > accuracy(held_out) + 0.05
    series = out_of_fold(params, x, y, scheme=TimeSeriesCV(n_splits=3), seed=0)
    assert np.isnan(series[:10]).all() and np.isfinite(series[-10:]).all()


def test_kfold_holds_every_row_of_a_regression_window_out_once() -> None:
    """A regression model's `cv: stratified` ran forward-chaining time-series CV instead
    (stratifying needs classes): its first rows were never scored out of fold."""
    x, y = regression(seed=3)
    splits = list(KFoldCV(n_splits=4).split(x, y, seed=0))
    held_out = np.sort(np.concatenate([test for _, test in splits]))
    assert len(splits) == 4 and held_out.tolist() == list(range(len(y)))
    assert splits[0][1].tolist() != list(range(len(splits[0][1])))  # shuffled
    oof = out_of_fold({"estimator": "ridge"}, x, y, scheme=KFoldCV(n_splits=4), seed=0)
    assert not np.isnan(oof).any()
    with pytest.raises(CVError, match="5-fold needs >= 5 rows"):
        list(KFoldCV(n_splits=5).split(x[:4], y[:4], seed=0))


def test_missing_group_ids_are_a_cv_error_naming_them_also_from_a_study(tmp_path: Any) -> None:
    """NaN among `groups` escaped `run_study` as scikit-learn's bare ValueError ("Input
    groups contains NaN"): the up-front split check only translated a CVError."""
    x, y = binary(seed=9, n=150)
    groups = np.where(np.arange(150) % 7 == 0, np.nan, np.arange(150) % 5)
    with pytest.raises(CVError, match=r"`groups` has 22 missing values \(NaN or None\)"):
        list(GroupKFoldCV(n_splits=3).split(x, y, groups=groups, seed=0))
    named = np.where(np.arange(150) % 2 == 0, None, "a").astype(object)
    with pytest.raises(CVError, match="`groups` has 75 missing values"):
        list(GroupKFoldCV(n_splits=2).split(x, y, groups=named, seed=0))
    with pytest.raises(StudyError, match="cannot be split by group_kfold: `groups` has 22 missing"):
        run_study(
            storage=str(tmp_path / "journal.log"),
            study_name="s",
            space=small_space(),
            x=x,
            y=y,
            objective=make_objective("log_loss"),
            cv=GroupKFoldCV(n_splits=3),
            budget=Budget(max_trials=2),
            plan=None,
            seed=0,
            groups=groups,
        )


@pytest.mark.parametrize("test_size", [0, -5, 2.5], ids=["zero", "negative", "fractional"])
def test_a_time_series_test_size_must_be_a_whole_number_of_rows(test_size: Any) -> None:
    """`test_size=-5` was accepted and gave every fold an empty test part (every trial of
    a study then failed); 0 was accepted too."""
    rule = f"`test_size` must be an int >= 1 or None, got {test_size}"
    with pytest.raises(CVError, match=rule):  # retune's own, a ValueError too
        TimeSeriesCV(n_splits=3, test_size=test_size)
    assert TimeSeriesCV(n_splits=3, test_size=1).test_size == 1


@pytest.mark.parametrize("scheme", [StratifiedKFoldCV, GroupKFoldCV, KFoldCV, TimeSeriesCV])
@pytest.mark.parametrize("n_splits", [2.5, 1, True], ids=["fractional", "one", "bool"])
def test_n_splits_must_be_an_int_of_at_least_two(scheme: Any, n_splits: Any) -> None:
    with pytest.raises(CVError, match=f"`n_splits` must be an int >= 2, got {n_splits}"):
        scheme(n_splits=n_splits)  # retune's own error (a ValueError too), not a bare one
    assert scheme(n_splits=np.int64(2)).n_splits == 2


def test_time_series_folds_leave_exactly_gap_rows_between_train_and_test() -> None:
    """240 rows, 3 splits: test parts of 60 rows from row 60; gap=10 ends each training
    part 10 rows before its test part, not 9 or 11."""
    x, y = binary(seed=1)
    folds = [
        (int(train.min()), int(train.max()), int(test.min()), int(test.max()))
        for train, test in TimeSeriesCV(n_splits=3, gap=10).split(x, y, seed=0)
    ]
    assert folds == [(0, 49, 60, 119), (0, 109, 120, 179), (0, 169, 180, 239)]


def test_a_fold_spread_exactly_at_max_fold_spread_is_not_vetoed() -> None:
    at_limit = FoldScores.of((0.25, 0.5), max_fold_spread=0.25)
    assert (at_limit.spread, at_limit.vetoed) == (0.25, False)
    assert FoldScores.of((0.25, 0.5), max_fold_spread=0.125).vetoed


def test_stratified_folds_split_when_the_rarest_class_has_exactly_n_splits_rows() -> None:
    x = np.arange(30, dtype=float).reshape(-1, 1)
    y = np.array([1, 1, 1] + [0] * 27)
    folds = list(StratifiedKFoldCV(n_splits=3).split(x, y, seed=0))
    assert [int(y[test].sum()) for _, test in folds] == [1, 1, 1]  # one rare row per test part
    with pytest.raises(CVError, match="the rarest has 3"):
        list(StratifiedKFoldCV(n_splits=4).split(x, y, seed=0))


def test_grouped_folds_split_when_there_are_exactly_n_splits_groups() -> None:
    x = np.arange(30, dtype=float).reshape(-1, 1)
    y = np.zeros(30)
    groups = np.repeat([0, 1, 2], 10)
    folds = list(GroupKFoldCV(n_splits=3).split(x, y, groups=groups, seed=0))
    assert sorted(tuple(np.unique(groups[test]).tolist()) for _, test in folds) == [
        (0,),
        (1,),
        (2,),
    ]
    with pytest.raises(CVError, match="needs >= 4 groups, got 3"):
        list(GroupKFoldCV(n_splits=4).split(x, y, groups=groups, seed=0))


def test_nested_estimate_scores_each_choice_on_its_outer_test_rows() -> None:
    """Each outer score is the loss of the chosen configuration fitted on the outer
    training part and scored on the outer test part (not on rows it was fitted on)."""
    x, y = binary(seed=5)
    scheme = NestedCV(outer=StratifiedKFoldCV(n_splits=3), inner=StratifiedKFoldCV(n_splits=2))
    objective = make_objective("log_loss")
    params = {"estimator": "logistic", "C": 1.0}
    estimate = nested_estimate(lambda *_: params, x, y, scheme=scheme, objective=objective, seed=0)
    expected = []
    for train, test in scheme.outer.split(x, y, groups=None, seed=0):
        pipeline = fit_pipeline(params, x[train], y[train], seed=0)
        expected.append(objective.loss(y[test], pipeline.predict_proba(x[test])))
    assert estimate.outer.scores == pytest.approx(expected, rel=1e-12)
    assert estimate.outer.scores == pytest.approx((0.494105, 0.432496, 0.375054), abs=1e-6)
