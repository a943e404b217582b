"""From a parameter set to a leakage-safe scikit-learn Pipeline.

Every preprocessing step lives inside the Pipeline, so cross-validation fits it on
each training fold only. The parameters and their defaults are listed in
:mod:`retune.space._vocabulary`.

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
from retune.space._vocabulary import REGRESSORS, _resolve


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
