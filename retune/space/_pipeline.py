"""From a parameter set to a leakage-safe scikit-learn Pipeline.

Every preprocessing step lives inside the Pipeline, so cross-validation fits it on
each training fold only. The parameter vocabulary (absent names take the defaults
below; unknown names are an error):

=================  ===============================================  ==============
name               values                                           default
=================  ===============================================  ==============
missing            ``none`` | ``indicator`` | ``drop_columns``      ``none``
drop_threshold     max share of missing values a column may have    0.5
imputer            ``mean`` | ``median`` | ``most_frequent``        ``median``
scaler             ``none`` | ``standard`` | ``robust``             ``none``
selector           ``none`` | ``k_best``                            ``none``
select_k           features kept by SelectKBest (capped at width)   10
class_weight       ``none`` | ``balanced``                          ``none``
estimator          classifiers: ``logistic`` | ``gradient_boosting``  ``logistic``
                   | ``random_forest`` | ``extra_trees``;
                   regressors: ``ridge`` |
                   ``gradient_boosting_regressor`` |
                   ``random_forest_regressor`` | ``extra_trees_regressor``
C                  logistic inverse regularisation                  1.0
alpha              ridge regularisation strength                    1.0
gb_n_estimators,   GradientBoosting{Classifier,Regressor}           50, 3, 0.1,
gb_max_depth,                                                       1.0
gb_learning_rate,
gb_subsample
forest_n_estimators, forest_max_depth,                              100, 8, 1
forest_min_samples_leaf  (forests; depth is always bounded)
=================  ===============================================  ==============

``class_weight=balanced`` reaches gradient boosting as balanced sample weights
(:func:`fit_pipeline` passes them), the other classifiers as ``class_weight``; it is an
error with a regressor. ``k_best`` ranks features by the F-test of the task
(``f_classif`` or ``f_regression``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.feature_selection import f_classif, f_regression
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import RobustScaler, StandardScaler
from sklearn.utils.class_weight import compute_sample_weight

from retune._errors import SearchSpaceError
from retune.space._transformers import (
    KBestColumnSelector,
    MissingIndicatorAppender,
    SparseColumnDropper,
)

DEFAULTS: dict[str, Any] = {
    "missing": "none",
    "drop_threshold": 0.5,
    "imputer": "median",
    "scaler": "none",
    "selector": "none",
    "select_k": 10,
    "class_weight": "none",
    "estimator": "logistic",
    "C": 1.0,
    "alpha": 1.0,
    "gb_n_estimators": 50,
    "gb_max_depth": 3,
    "gb_learning_rate": 0.1,
    "gb_subsample": 1.0,
    "forest_n_estimators": 100,
    "forest_max_depth": 8,
    "forest_min_samples_leaf": 1,
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "missing": ("none", "indicator", "drop_columns"),
    "imputer": ("mean", "median", "most_frequent"),
    "scaler": ("none", "standard", "robust"),
    "selector": ("none", "k_best"),
    "class_weight": ("none", "balanced"),
    "estimator": (
        "logistic",
        "gradient_boosting",
        "random_forest",
        "extra_trees",
        "ridge",
        "gradient_boosting_regressor",
        "random_forest_regressor",
        "extra_trees_regressor",
    ),
}
#: The estimator choices that predict a number rather than class probabilities.
REGRESSORS = frozenset(
    {"ridge", "gradient_boosting_regressor", "random_forest_regressor", "extra_trees_regressor"}
)
KNOWN_PARAMS = frozenset(DEFAULTS)


def _resolve(params: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - KNOWN_PARAMS)
    if unknown:
        raise SearchSpaceError(
            f"unknown pipeline parameter(s) {unknown}; known: {sorted(KNOWN_PARAMS)}"
        )
    p = {**DEFAULTS, **params}
    for name, choices in _CHOICES.items():
        if p[name] not in choices:
            raise SearchSpaceError(
                f"`{name}` must be one of {list(choices)}, got {p[name]!r}", path=name
            )
    if p["estimator"] in REGRESSORS and p["class_weight"] != "none":
        raise SearchSpaceError(
            f"`class_weight` applies to classifiers, not to the regressor {p['estimator']!r}",
            path="class_weight",
        )
    return p


def build_pipeline(params: Mapping[str, Any], *, n_features: int, seed: int) -> Pipeline:
    """An unfitted Pipeline for ``params`` (see the module docstring for the vocabulary)."""
    if n_features < 1:
        raise ValueError(f"`n_features` must be >= 1, got {n_features}")
    p = _resolve(params)
    steps: list[tuple[str, Any]] = []
    if p["missing"] == "drop_columns":
        steps.append(("drop", SparseColumnDropper(max_missing_share=float(p["drop_threshold"]))))
    elif p["missing"] == "indicator":
        steps.append(("indicate", MissingIndicatorAppender()))
    steps.append(("impute", SimpleImputer(strategy=p["imputer"], keep_empty_features=True)))
    if p["scaler"] == "standard":
        steps.append(("scale", StandardScaler()))
    elif p["scaler"] == "robust":
        steps.append(("scale", RobustScaler()))
    if p["selector"] == "k_best":
        k = int(p["select_k"])
        if k < 1:
            raise SearchSpaceError(f"`select_k` must be >= 1, got {k}", path="select_k")
        score = f_regression if p["estimator"] in REGRESSORS else f_classif
        steps.append(("select", KBestColumnSelector(score, k=min(k, n_features))))
    steps.append(("model", _estimator(p, seed)))
    return Pipeline(steps)


def _estimator(p: Mapping[str, Any], seed: int) -> Any:
    if p["estimator"] in REGRESSORS:
        return _regressor(p, seed)
    weight = "balanced" if p["class_weight"] == "balanced" else None
    if p["estimator"] == "logistic":
        return LogisticRegression(C=float(p["C"]), class_weight=weight, max_iter=500)
    if p["estimator"] == "gradient_boosting":
        return GradientBoostingClassifier(
            n_estimators=int(p["gb_n_estimators"]),
            max_depth=int(p["gb_max_depth"]),
            learning_rate=float(p["gb_learning_rate"]),
            subsample=float(p["gb_subsample"]),
            random_state=seed,
        )
    forest = RandomForestClassifier if p["estimator"] == "random_forest" else ExtraTreesClassifier
    return forest(
        n_estimators=int(p["forest_n_estimators"]),
        max_depth=int(p["forest_max_depth"]),
        min_samples_leaf=int(p["forest_min_samples_leaf"]),
        class_weight=weight,
        random_state=seed,
        n_jobs=1,
    )


def _regressor(p: Mapping[str, Any], seed: int) -> Any:
    if p["estimator"] == "ridge":
        return Ridge(alpha=float(p["alpha"]))
    if p["estimator"] == "gradient_boosting_regressor":
        return GradientBoostingRegressor(
            n_estimators=int(p["gb_n_estimators"]),
            max_depth=int(p["gb_max_depth"]),
            learning_rate=float(p["gb_learning_rate"]),
            subsample=float(p["gb_subsample"]),
            random_state=seed,
        )
    forest = (
        RandomForestRegressor
        if p["estimator"] == "random_forest_regressor"
        else ExtraTreesRegressor
    )
    return forest(
        n_estimators=int(p["forest_n_estimators"]),
        max_depth=int(p["forest_max_depth"]),
        min_samples_leaf=int(p["forest_min_samples_leaf"]),
        random_state=seed,
        n_jobs=1,
    )


def is_regression(params: Mapping[str, Any]) -> bool:
    """Whether ``params`` builds a regressor (it predicts numbers, not probabilities)."""
    return _resolve(params)["estimator"] in REGRESSORS


def fit_pipeline(
    params: Mapping[str, Any],
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    *,
    seed: int,
) -> Pipeline:
    """Build and fit the pipeline for ``params`` on ``(x, y)``."""
    pipeline = build_pipeline(params, n_features=x.shape[1], seed=seed)
    p = _resolve(params)
    fit_kwargs: dict[str, Any] = {}
    if p["class_weight"] == "balanced" and p["estimator"] == "gradient_boosting":
        fit_kwargs["model__sample_weight"] = compute_sample_weight("balanced", y)
    with warnings.catch_warnings():
        # f_classif on a constant column (an all-zero missing indicator, a column the
        # imputer filled entirely) warns and scores NaN; SelectKBest ranks NaN last.
        warnings.filterwarnings("ignore", message=r"Features .* are constant", category=UserWarning)
        warnings.filterwarnings(
            "ignore", message=r"invalid value encountered", category=RuntimeWarning
        )
        # `drop_columns` can leave fewer columns than `select_k` (capped at the window's
        # width, not at what the dropper keeps): SelectKBest then keeps them all and warns.
        warnings.filterwarnings(
            "ignore", message=r"k=\d+ is greater than n_features", category=UserWarning
        )
        pipeline.fit(x, y, **fit_kwargs)
    return pipeline
